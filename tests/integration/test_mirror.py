"""``snap restore --mirror``: the restored paths end equal to the snapshot; extras are moved aside."""

from __future__ import annotations

from pathlib import Path

from snapstore.errors import ExitCode
from tests.conftest import tree_state
from tests.integration.test_workflows import build_workspace, ok, snap_in


def test_mirror_rolls_back_within_what_the_tier_covers(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "weekly", now="2026-11-29T23:00:00Z"))
    ok(snap_in(ws, "take", "--tier", "daily", now="2026-11-30T07:00:00Z"))
    z = ws / "agents" / "Z"
    clean = tmp_path / "clean"
    ok(snap_in(ws, "restore", "latest:weekly", "agents/Z", "--target", str(clean)))

    (z / "skills" / "bad").mkdir()
    (z / "skills" / "bad" / "evil.py").write_text("rogue\n")
    (z / "memory" / "new-since-backup.md").write_text("new\n")
    (z / "SOUL.md").write_text("# tampered\n")
    (ws / "logs" / "today.log").write_text("not in the weekly tier\n")

    # daily covers weights and memory only: the memory extra goes aside, the rogue skill and SOUL.md stay
    res = ok(snap_in(ws, "restore", "latest:daily", "--target", ".", "--mirror", "--json")).json()
    assert isinstance(res, dict)
    assert res["moved_aside"] == ["agents/Z/memory/new-since-backup.md"]
    aside = Path(res["aside"])
    assert aside.parent == ws / ".snap-aside" and (aside / "agents/Z/memory/new-since-backup.md").read_text() == "new\n"
    assert (z / "skills" / "bad" / "evil.py").exists() and (z / "SOUL.md").read_text() == "# tampered\n"

    # weekly covers agents/: agents/Z ends equal to the snapshot, the extras are kept aside
    res2 = ok(snap_in(ws, "restore", "latest:weekly", "agents/Z", "--target", ".", "--mirror"))
    assert "moved aside 1 entry not in snapshot" in res2.out
    assert tree_state(z) == tree_state(clean / "agents" / "Z")
    assert not (z / "skills" / "bad").exists()
    kept = [p for p in (ws / ".snap-aside").rglob("evil.py")]
    assert len(kept) == 1 and kept[0].read_text() == "rogue\n"
    assert (ws / "logs" / "today.log").exists()  # outside the restored path: left alone
    assert len(list((ws / ".snap-aside").rglob("new-since-backup.md"))) == 1  # the aside dir is never moved


def test_mirror_refuses_what_it_cannot_do_before_moving_anything(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "weekly", now="2026-11-29T23:00:00Z"))
    (ws / "agents" / "Z" / "extra.txt").write_text("x\n")
    before = tree_state(ws)
    res = snap_in(ws, "restore", "latest:weekly", "agents/Z", "agents/Nobody", "--target", ".", "--mirror")
    assert res.code == ExitCode.NOT_FOUND and res.err.count("\n") == 1
    bad = snap_in(ws, "restore", "latest:weekly", "--target", ".", "--mirror", "--partial")
    assert bad.code == ExitCode.USAGE
    after = tree_state(ws)
    after.pop(b"alert.json", None)  # on_failure of the config ran: a failed restore alerts
    assert after == before
