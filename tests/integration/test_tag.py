"""``snap tag SNAPSHOT --add T --remove T --set T`` through the real CLI. Tags are part of a
record, and a record's id is the hash of its body: a changed snapshot gets a new record and a
new id (``original`` names the first), the old id is gone, pins follow, reference counts stay
right (verify recounts them), and a tag killed between the new record and the forget of the
old one loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

from snapstore.errors import ExitCode
from tests.conftest import Result, SnapRunner


def ok(res: Result) -> Result:
    assert res.code == 0, (res.code, res.out, res.err)
    return res


def listed(snap: SnapRunner) -> list[dict]:
    return ok(snap("list", "--json")).json()  # type: ignore[return-value]


def _two(snap: SnapRunner, tmp_path: Path) -> tuple[dict, dict]:
    src = tmp_path / "agents"
    src.mkdir()
    (src / "weights.json").write_text(json.dumps({"w": 1}))
    ok(snap("init"))
    ok(snap("take", "agents", "--tag", "daily-run", cwd=tmp_path, env={"SNAP_NOW": "2026-11-01T07:00:00Z"}))
    (src / "weights.json").write_text(json.dumps({"w": 2}))
    ok(snap("take", "agents", cwd=tmp_path, env={"SNAP_NOW": "2026-11-02T07:00:00Z"}))
    first, second = listed(snap)
    return first, second


def test_tag_rewrites_the_record_and_the_old_id_is_gone(snap: SnapRunner, tmp_path: Path) -> None:
    first, second = _two(snap, tmp_path)
    ok(snap("pin", first["id"]))
    packs_before = ok(snap("stats", "--json")).json()["pack_bytes"]  # type: ignore[index]
    res = ok(snap("tag", first["id"][:8], "--add", "pre-upgrade", "--remove", "daily-run", "--json"))
    [change] = res.json()  # type: ignore[misc]
    assert change["old"] == first["id"] and change["new"] != first["id"] and change["tags"] == ["pre-upgrade"]
    after = listed(snap)
    assert [s["id"] for s in after] == [change["new"], second["id"]]
    new = after[0]
    assert new["tags"] == ["pre-upgrade"] and new["original"] == first["id"] and new["pinned"] is True
    assert (new["time"], new["tier"], new["files"], new["bytes"]) == (first["time"], first["tier"], first["files"],
                                                                      first["bytes"])
    # the old id names nothing; the new one has the same contents
    gone = snap("cat", first["id"][:8], "agents/weights.json")
    assert gone.code == ExitCode.NOT_FOUND and gone.err.count("\n") == 1
    assert json.loads(ok(snap("cat", change["new"][:8], "agents/weights.json")).out) == {"w": 1}
    assert not (Path(snap.repo) / "snapshots" / f"{first['id']}.json").exists()  # type: ignore[attr-defined]
    # refcounts recounted from scratch match, and gc has nothing to free: the same tree, still referenced
    assert "no damage found" in ok(snap("verify", "--read-data")).out
    gc = ok(snap("gc", "--json")).json()
    assert isinstance(gc, dict) and gc["forgotten"] == [] and gc["reclaimed_bytes"] == 0, gc
    assert gc["blobs_removed"] == 0 and gc["bytes_after"] == packs_before
    # tagging again builds on the new record; original stays the first id
    ok(snap("tag", "latest", "--add", "kept"))
    assert listed(snap)[-1]["original"] == second["id"]
    [again] = ok(snap("tag", change["new"][:8], "--set", "a", "--set", "b", "--json")).json()  # type: ignore[misc]
    assert again["tags"] == ["a", "b"] and listed(snap)[0]["original"] == first["id"]
    events = [json.loads(line) for line in (tmp_path / "system-history.jsonl").read_text().splitlines()]
    tag_events = [e for e in events if e["command"] == "tag"]
    assert tag_events[0]["replaced"] == first["id"] and tag_events[0]["snapshot"] == change["new"]


def test_unchanged_tags_keep_the_id_and_bad_tags_are_one_line(snap: SnapRunner, tmp_path: Path) -> None:
    first, _second = _two(snap, tmp_path)
    res = ok(snap("tag", first["id"][:8], "--add", "daily-run"))
    assert "tags unchanged" in res.out and listed(snap)[0]["id"] == first["id"]
    for bad in (["--add", "has space"], ["--remove", "a,b"], []):
        res = snap("tag", first["id"][:8], *bad)
        assert res.code == ExitCode.USAGE and res.err.count("\n") == 1, res.err
    assert listed(snap)[0]["id"] == first["id"]


def test_a_killed_tag_loses_no_snapshot(snap: SnapRunner, tmp_path: Path) -> None:
    first, second = _two(snap, tmp_path)
    killed = snap("tag", first["id"][:8], "--add", "audit", env={"SNAP_TEST_CRASH_AT": "tag-after-new"})
    assert killed.code < 0 or killed.code == 137, killed
    both = listed(snap)
    assert len(both) == 3 and first["id"] in {s["id"] for s in both}
    assert "no damage found" in ok(snap("verify")).out  # the tree is counted twice, correctly
    # the same command again finishes the job: the same new record, the old one forgotten
    ok(snap("tag", first["id"][:8], "--add", "audit"))
    after = listed(snap)
    assert len(after) == 2 and first["id"] not in {s["id"] for s in after} and second["id"] in {s["id"] for s in after}
    assert {s["id"] for s in both} - {first["id"]} == {s["id"] for s in after}
    assert "no damage found" in ok(snap("verify", "--read-data")).out
