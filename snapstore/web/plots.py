"""Plots drawn on the server as SVG (no JavaScript library, nothing fetched: the page works
offline). Pure: numbers in, markup out; every label is escaped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any


@dataclass(frozen=True)
class Series:
    """One line: its name, colour and (time, value) points, oldest first."""

    name: str
    colour: str
    points: Sequence[tuple[datetime, float]]


def _ticks(top: float, count: int = 4) -> list[float]:
    return [top * i / count for i in range(count + 1)]


def line_chart(series: Sequence[Series], *, title: str, unit: Callable[[float], str], width: int = 720,
               height: int = 240, right: Series | None = None, right_unit: Callable[[float], str] | None = None) -> str:
    """An SVG line chart of ``series`` against time (left axis), and ``right`` on its own axis."""
    pad_l, pad_r, pad_t, pad_b = 70, 70 if right is not None else 16, 28, 36
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    every = [p for s in series for p in s.points] + (list(right.points) if right is not None else [])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}"><title>{escape(title)}</title>',
           f'<text x="{pad_l}" y="16" class="chart-title">{escape(title)}</text>']
    if not every:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no snapshots yet</text></svg>')
        return "".join(out)
    t0 = min(p[0] for p in every).timestamp()
    t1 = max(p[0] for p in every).timestamp()
    span = (t1 - t0) or 1.0

    def x(moment: datetime) -> float:
        return pad_l + (moment.timestamp() - t0) / span * w if t1 > t0 else pad_l + w / 2

    def axis(points: Sequence[tuple[datetime, float]]) -> float:
        return max((v for _, v in points), default=0.0) or 1.0

    top = max(axis(s.points) for s in series) if series else 1.0
    for tick in _ticks(top):
        y = pad_t + h - tick / top * h
        out.append(f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(unit(tick))}</text>')
    for moment in (datetime.fromtimestamp(t0, UTC), datetime.fromtimestamp(t1, UTC)) if t1 > t0 else ():
        anchor = "start" if moment.timestamp() == t0 else "end"
        out.append(f'<text x="{x(moment):.1f}" y="{height - 12}" text-anchor="{anchor}">'
                   f'{escape(moment.strftime("%Y-%m-%d"))}</text>')

    def line(s: Series, scale: float, dashed: bool = False) -> None:
        coords = " ".join(f"{x(t):.1f},{pad_t + h - v / scale * h:.1f}" for t, v in s.points)
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        out.append(f'<polyline points="{coords}" fill="none" stroke="{escape(s.colour)}" stroke-width="2"{dash} '
                   f'class="series" data-name="{escape(s.name)}"/>')
        for t, v in s.points[-1:]:
            y = pad_t + h - v / scale * h
            out.append(f'<circle cx="{x(t):.1f}" cy="{y:.1f}" r="3" fill="{escape(s.colour)}"/>')

    for s in series:
        line(s, top)
    if right is not None and right_unit is not None:
        rtop = axis(right.points)
        for tick in _ticks(rtop):
            y = pad_t + h - tick / rtop * h
            out.append(f'<text x="{pad_l + w + 6}" y="{y + 4:.1f}">{escape(right_unit(tick))}</text>')
        line(right, rtop, dashed=True)
    legend = list(series) + ([right] if right is not None else [])
    lx = width - pad_r - sum(14 + 7 * len(s.name) + 14 for s in legend)  # right-aligned, clear of the title
    for s in legend:
        out.append(f'<rect x="{lx}" y="6" width="10" height="10" fill="{escape(s.colour)}"/>'
                   f'<text x="{lx + 14}" y="15">{escape(s.name)}</text>')
        lx += 14 + 7 * len(s.name) + 14
    out.append("</svg>")
    return "".join(out)


def timeline(snapshots: Sequence[Any], pinned: set[str], *, link: Callable[[Any], str], width: int = 900) -> str:
    """Snapshots as dots on one time axis per tier (pinned ones ringed), each a link."""
    tiers = sorted({s.tier for s in snapshots})
    row_h, pad_l, pad_r, pad_t = 26, 110, 20, 10
    height = pad_t + row_h * max(len(tiers), 1) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart timeline" role="img" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}"><title>Snapshots by tier</title>']
    if not snapshots:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no snapshots</text></svg>')
        return "".join(out)
    t0 = min(s.time for s in snapshots).timestamp()
    t1 = max(s.time for s in snapshots).timestamp()
    w = width - pad_l - pad_r

    def x(moment: datetime) -> float:
        return pad_l + (moment.timestamp() - t0) / (t1 - t0) * w if t1 > t0 else pad_l + w / 2

    for i, tier in enumerate(tiers):
        y = pad_t + row_h * i + row_h / 2
        out.append(f'<text x="{pad_l - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(tier)}</text>'
                   f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        for s in (s for s in snapshots if s.tier == tier):
            ring = ' class="pinned" stroke="#c05621" stroke-width="2"' if s.id in pinned else ""
            label = f"{s.short_id} {s.time:%Y-%m-%d %H:%M} {' '.join(s.tags)}".strip()
            out.append(f'<a href="{escape(link(s))}"><circle cx="{x(s.time):.1f}" cy="{y:.1f}" r="5" fill="#2b6cb0"'
                       f'{ring}><title>{escape(label)}</title></circle></a>')
    base = pad_t + row_h * len(tiers) + 18
    for moment, anchor in ((min(s.time for s in snapshots), "start"), (max(s.time for s in snapshots), "end")):
        out.append(f'<text x="{x(moment):.1f}" y="{base}" text-anchor="{anchor}">'
                   f'{escape(moment.strftime("%Y-%m-%d %H:%M"))}</text>')
    out.append("</svg>")
    return "".join(out)
