"""Snapshot selectors through the real ``snap`` command: ``latest:T1,T2`` and ``@PATH``."""

from __future__ import annotations

from pathlib import Path

from snapstore.errors import ExitCode
from tests.integration.test_workflows import build_workspace, ok, snap_in, snapshots


def _ids(ws: Path) -> dict[str, str]:
    return {s["tier"]: s["id"] for s in snapshots(ws)}


def test_newest_of_several_tiers_and_newest_holding_a_path(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "weekly", now="2026-11-22T23:00:00Z"))  # agents/
    ok(snap_in(ws, "take", "--tier", "daily", now="2026-11-23T07:00:00Z"))  # weights + memory only
    ok(snap_in(ws, "take", "--tier", "monthly", now="2026-11-24T01:00:00Z"))  # state, logs, packs
    ids = _ids(ws)

    targets = iter(range(100))

    def resolved(spec: str) -> str:  # the snapshot 'snap restore SPEC' used
        res = ok(snap_in(ws, "restore", spec, "--target", str(tmp_path / f"t{next(targets)}"), "--json")).json()
        assert isinstance(res, dict)
        return str(res["snapshot"])

    assert resolved("latest") == ids["monthly"]
    assert resolved("latest:daily,weekly") == ids["daily"]
    assert resolved("latest:weekly,daily") == ids["daily"]
    assert resolved("latest:weekly") == ids["weekly"]
    # SOUL.md is in weekly only; memory in daily and weekly; the state file in monthly only
    assert resolved("latest@agents/Z/SOUL.md") == ids["weekly"]
    assert resolved("latest:daily,weekly@agents/Z/memory") == ids["daily"]
    assert resolved("latest@state/orchestrator_state.json") == ids["monthly"]
    assert resolved(ids["weekly"][:10] + "@agents/Z") == ids["weekly"]
    # the commands that name a snapshot all take the selector
    assert "SOUL.md" in ok(snap_in(ws, "ls", "latest@agents/Z/SOUL.md", "agents/Z")).out
    assert ok(snap_in(ws, "cat", "latest:daily,weekly@agents/Z/SOUL.md", "agents/Z/SOUL.md")).out.startswith("# Z")


def test_selector_errors_are_one_line(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "daily", now="2026-11-23T07:00:00Z"))
    daily = _ids(ws)["daily"]
    for spec, code, words in [
        ("latest@agents/Z/SOUL.md", ExitCode.NOT_FOUND, "no snapshot containing agents/Z/SOUL.md"),
        ("latest:weekly,monthly", ExitCode.NOT_FOUND, "no snapshot in tiers weekly or monthly"),
        ("latest:Weekly", ExitCode.NOT_FOUND, "is not a tier name"),
        ("latest@", ExitCode.NOT_FOUND, "'@' wants a path"),
        (daily[:8] + "@agents/Z/SOUL.md", ExitCode.NOT_FOUND, "does not contain agents/Z/SOUL.md"),
        ("nothex", ExitCode.NOT_FOUND, "no snapshot 'nothex'"),
    ]:
        res = snap_in(ws, "ls", spec)
        assert res.code == code, (spec, res.err)
        assert words in res.err and res.err.count("\n") == 1, (spec, res.err)
