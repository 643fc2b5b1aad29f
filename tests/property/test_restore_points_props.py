"""Restore points over random histories of full (``agents``) and partial (memory, weights) snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from snapstore.agent.recover import restore_points
from snapstore.format.snapshot import Snapshot

BASE = Path("/ws")
KINDS = {"full": ("agents",), "memory": ("agents/Z/memory",), "weights": ("agents/Z/w.json",),
         "both": ("agents/Z/memory", "agents/Z/w.json"), "other": ("logs",)}


def history(kinds: list[str]) -> list[Snapshot]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [Snapshot(time=start + timedelta(hours=i), tier=kind, root="00",
                     paths=tuple(f"/ws/{p}" for p in KINDS[kind]), id=f"{i:064x}")
            for i, kind in enumerate(kinds)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(KINDS)), max_size=12))
def test_points(kinds: list[str]) -> None:
    snaps = history(kinds)
    points = restore_points(snaps, [BASE / "agents/Z"], [b"agents/Z"], BASE, lambda s, m: True)
    fulls = [s for s in snaps if s.tier == "full"]
    if not fulls:
        assert points == []  # parts alone cannot give an exact tree
        return
    signatures = [tuple((layer.snapshot.id, layer.members) for layer in p.layers) for p in points]
    assert len(set(signatures)) == len(signatures)
    newest = [p.newest.time for p in points]
    assert newest == sorted(newest, reverse=True)
    for point in points:
        base, *over = point.layers
        assert base.snapshot.tier == "full" and base.members == (b"agents/Z",)
        times = [layer.snapshot.time for layer in point.layers]
        assert times == sorted(times) and len(set(times)) == len(times)
        parts = [m for layer in over for m in layer.members]
        assert len(parts) == len(set(parts)) and all(m.startswith(b"agents/Z/") for m in parts)
    # the first point: the newest full snapshot, and for each part the newest copy after it
    first = points[0]
    base = max(fulls, key=lambda s: s.time)
    assert first.layers[0].snapshot == base
    for part in (b"agents/Z/memory", b"agents/Z/w.json"):
        newer = [s for s in snaps if s.time > base.time and f"/ws/{part.decode()}" in s.paths]
        holders = [layer.snapshot for layer in first.layers[1:] if part in layer.members]
        assert holders == ([max(newer, key=lambda s: s.time)] if newer else [])
