"""Server-side SVG plots: one point per value, labels escaped, empty input drawn as a note."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

from snapstore.web.plots import Series, line_chart, timeline

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NS = "{http://www.w3.org/2000/svg}"


def test_line_chart_points_and_escaping() -> None:
    points = [(T0 + timedelta(days=i), float(i * 10)) for i in range(5)]
    svg = line_chart([Series("<stored>", "#123456", points)], title="a & b", unit=str,
                     right=Series("dedup", "#654321", [(t, v / 10) for t, v in points]), right_unit=str)
    root = ElementTree.fromstring(svg)  # well-formed: every label was escaped
    lines = root.findall(f"{NS}polyline")
    assert [line.get("data-name") for line in lines] == ["<stored>", "dedup"]
    assert all(len(line.get("points", "").split()) == 5 for line in lines)
    xs = [float(p.split(",")[0]) for p in lines[0].get("points", "").split()]
    assert xs == sorted(xs) and xs[0] < xs[-1]
    assert root.find(f"{NS}title") is not None and root.find(f"{NS}title").text == "a & b"  # type: ignore[union-attr]


def test_empty_inputs_say_so() -> None:
    assert "no snapshots yet" in line_chart([Series("s", "#000", [])], title="t", unit=str)
    assert "no snapshots" in timeline([], set(), link=str)


@dataclass
class Snap:
    id: str
    tier: str
    time: datetime
    tags: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:8]


def test_timeline_rows_per_tier_and_pins() -> None:
    snaps = [Snap("a" * 64, "daily", T0), Snap("b" * 64, "weekly", T0 + timedelta(days=7), ("x<y",)),
             Snap("c" * 64, "daily", T0 + timedelta(days=1))]
    root = ElementTree.fromstring(timeline(snaps, {"b" * 64}, link=lambda s: f"/snapshots/{s.id}"))
    circles = root.iter(f"{NS}circle")
    assert sum(1 for _ in circles) == 3
    assert sum(1 for c in root.iter(f"{NS}circle") if c.get("class") == "pinned") == 1
    assert {a.get("href") for a in root.iter(f"{NS}a")} == {f"/snapshots/{c * 64}" for c in "abc"}
