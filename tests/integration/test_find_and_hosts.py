"""``snap find PATTERN`` across snapshots and ``--host`` where a snapshot is named, in a
repository two hosts share (``SNAP_HOSTNAME`` stands in for two machines), through the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

from snapstore.errors import ExitCode
from tests.conftest import Result, run_snap


def ok(res: Result) -> Result:
    assert res.code == 0, (res.code, res.out, res.err)
    return res


def on(host: str, tmp: Path, *args: str, now: str, input: bytes | None = None) -> Result:
    return run_snap(*args, repo=tmp / "repo", cwd=tmp / host,
                    env={"SNAP_HOSTNAME": host, "SNAP_NOW": now, "TZ": "UTC"}, input=input)


def _two_hosts(tmp: Path) -> None:
    for host in ("alpha", "beta"):
        (tmp / host / "agents" / "Z").mkdir(parents=True)
        (tmp / host / "agents" / "Z" / "priority_weights.json").write_text(json.dumps({"host": host}))
        (tmp / host / "agents" / "Z" / "SOUL.md").write_text(f"# Z on {host}\n")
    ok(run_snap("init", "--encryption", "none", repo=tmp / "repo"))
    ok(on("alpha", tmp, "take", "agents", now="2026-11-01T07:00:00Z"))
    ok(on("beta", tmp, "take", "agents", now="2026-11-02T07:00:00Z"))
    (tmp / "alpha" / "agents" / "Z" / "priority_weights.json").write_text(json.dumps({"host": "alpha", "v": 2}))
    (tmp / "alpha" / "agents" / "Z" / "new_skill.py").write_text("pass\n")
    ok(on("alpha", tmp, "take", "agents", now="2026-11-03T07:00:00Z"))


def test_find_lists_every_snapshot_holding_a_match(tmp_path: Path) -> None:
    _two_hosts(tmp_path)
    found = ok(on("alpha", tmp_path, "find", "*.json", "--json", now="2026-11-04T00:00:00Z")).json()
    assert isinstance(found, list) and len(found) == 3
    assert [(f["hostname"], f["time"]) for f in found] == [
        ("alpha", "2026-11-01T07:00:00Z"), ("beta", "2026-11-02T07:00:00Z"), ("alpha", "2026-11-03T07:00:00Z")]
    assert {f["path"] for f in found} == {"agents/Z/priority_weights.json"}
    sizes = [f["size"] for f in found]
    assert sizes == [len(json.dumps({"host": "alpha"})), len(json.dumps({"host": "beta"})),
                     len(json.dumps({"host": "alpha", "v": 2}))]
    mtime = os.stat(tmp_path / "alpha" / "agents" / "Z" / "priority_weights.json").st_mtime_ns
    assert found[2]["mtime_ns"] == mtime and found[2]["type"] == "file"
    # a path pattern, and only the snapshot that has it
    newest = ok(on("alpha", tmp_path, "find", "agents/*/new_skill.py", "--json", now="2026-11-04T00:00:00Z")).json()
    assert [(f["path"], f["time"]) for f in newest] == [("agents/Z/new_skill.py", "2026-11-03T07:00:00Z")]  # type: ignore[union-attr]
    # human output: one row per match and a count
    res = ok(on("alpha", tmp_path, "find", "SOUL.md", "--host", "beta", now="2026-11-04T00:00:00Z"))
    lines = res.out.splitlines()
    assert lines[0].split() == ["SNAPSHOT", "TIME", "(UTC)", "TIER", "HOST", "SIZE", "MTIME", "(UTC)", "PATH"]
    assert len(lines) == 3 and "beta" in lines[1] and lines[1].endswith("agents/Z/SOUL.md")
    assert lines[-1] == "1 match(es) in 1 of 1 snapshot(s)"
    res = on("alpha", tmp_path, "find", "*.nothing", now="2026-11-04T00:00:00Z")
    assert res.code == ExitCode.NOT_FOUND and res.err.count("\n") == 1 and "in 3 snapshot(s)" in res.err


def test_host_narrows_latest_for_every_command(tmp_path: Path) -> None:
    _two_hosts(tmp_path)
    now = "2026-11-04T00:00:00Z"
    cat = ok(on("beta", tmp_path, "cat", "latest", "agents/Z/priority_weights.json", "--host", "beta", now=now))
    assert json.loads(cat.out) == {"host": "beta"}
    assert json.loads(ok(on("beta", tmp_path, "cat", "latest", "agents/Z/priority_weights.json", now=now)).out) == {
        "host": "alpha", "v": 2}  # without --host: the newest of any host
    names = {r["path"] for r in ok(on("beta", tmp_path, "ls", "-R", "latest", "--host", "beta", "--json",
                                      now=now)).json()}  # type: ignore[union-attr]
    assert "agents/Z/new_skill.py" not in names and "agents/Z/SOUL.md" in names
    out = tmp_path / "restored"
    ok(on("beta", tmp_path, "restore", "latest", "--host", "beta", "--target", str(out), now=now))
    assert json.loads((out / "agents" / "Z" / "priority_weights.json").read_text()) == {"host": "beta"}
    du = ok(on("beta", tmp_path, "du", "latest", "--host", "alpha", "--json", now=now)).json()
    alpha_ids = [s["id"] for s in ok(run_snap("list", "--host", "alpha", "--json", repo=tmp_path / "repo")).json()]  # type: ignore[union-attr]
    assert isinstance(du, dict) and du["snapshot"] == alpha_ids[-1]
    # diff of alpha's latest with the one before it of the same host (beta's lies between)
    diff = ok(on("alpha", tmp_path, "diff", "latest", "--host", "alpha", "--json", now=now)).json()
    assert isinstance(diff, dict), diff
    assert {c["path"] for c in diff["changes"]} >= {"agents/Z/new_skill.py", "agents/Z/priority_weights.json"}
    res = on("alpha", tmp_path, "cat", "latest", "agents/Z/SOUL.md", "--host", "gamma", now=now)
    assert res.code == ExitCode.NOT_FOUND and "from host 'gamma'" in res.err and res.err.count("\n") == 1


def test_per_host_keep_counts_in_a_shared_repository(tmp_path: Path) -> None:
    config = {"repository": "../repo", "tiers": {"daily": {"sources": ["agents"], "keep": 3}},
              "retention": {"hosts": {"laptop": {"tiers": {"daily": {"keep": 1}}}}}}
    for host in ("db1", "laptop"):
        (tmp_path / host / "agents").mkdir(parents=True)
        (tmp_path / host / "backup_schedule.json").write_text(json.dumps(config))
    ok(run_snap("init", "--encryption", "none", repo=tmp_path / "repo"))
    for day in range(1, 5):
        for host in ("db1", "laptop"):
            (tmp_path / host / "agents" / "state.json").write_text(json.dumps({"host": host, "day": day}))
            ok(on(host, tmp_path, "take", "--tier", "daily", now=f"2026-11-0{day}T07:00:00Z"))
    dry = ok(on("db1", tmp_path, "gc", "--dry-run", "--json", now="2026-11-05T00:00:00Z")).json()
    assert isinstance(dry, dict), dry
    kept = {tuple(k["reasons"]) for k in dry["kept"]}
    assert ("tier daily on laptop: #1 of newest 1",) in kept and ("tier daily: #3 of newest 3",) in kept
    ok(on("db1", tmp_path, "gc", now="2026-11-05T00:00:00Z"))
    left = ok(run_snap("list", "--json", repo=tmp_path / "repo")).json()
    assert isinstance(left, list)
    assert [s["time"][:10] for s in left if s["hostname"] == "db1"] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert [s["time"][:10] for s in left if s["hostname"] == "laptop"] == ["2026-11-04"]
    event = [json.loads(line) for line in (tmp_path / "system-history.jsonl").read_text().splitlines()][-1]
    assert event["command"] == "gc" and len(event["forgotten"]) == 4
    # a tier the config lacks under a host is one line, exit 6
    bad = {**config, "retention": {"hosts": {"laptop": {"tiers": {"hourly": {"keep": 1}}}}}}
    (tmp_path / "db1" / "backup_schedule.json").write_text(json.dumps(bad))
    res = on("db1", tmp_path, "gc", "--dry-run", now="2026-11-05T00:00:00Z")
    assert res.code == ExitCode.CONFIG and "retention.hosts.laptop.tiers: unknown tier 'hourly'" in res.err
    assert res.err.count("\n") == 1
