"""docs/recovery.md, step by step, through the real ``snap`` command."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from snapstore.errors import ExitCode
from tests.integration.test_workflows import build_workspace, ok, snap_in, snapshots

STATE = "state/orchestrator_state.json"


def _take_all(ws: Path, now: str) -> None:
    for tier in ("weekly", "monthly", "daily"):
        ok(snap_in(ws, "take", "--tier", tier, now=now))


def test_state_file_corruption(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    (ws / STATE).write_text(json.dumps({"version": 1, "tasks": ["good"]}))
    _take_all(ws, "2026-11-20T07:00:00Z")
    (ws / STATE).write_text('{"version": 1, "tasks": ["half writ')  # corrupt copy gets backed up too
    ok(snap_in(ws, "take", "--tier", "monthly", now="2026-11-21T07:00:00Z"))
    state_file = json.loads((ws / "orchestrator_config.json").read_text())["stateFile"]
    res = ok(snap_in(ws, "restore", "--latest-good", state_file, "--check", "json", "--target", "."))
    assert "skip" in (res.out + res.err).lower()
    assert json.loads((ws / STATE).read_text()) == {"version": 1, "tasks": ["good"]}  # jq empty
    aside = [p for p in os.listdir(ws / "state") if ".corrupt-" in p]
    assert len(aside) == 1 and "half writ" in (ws / "state" / aside[0]).read_text()


def test_disk_pressure(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    for i in range(2, 5):
        (ws / "logs" / f"orchestrator.log.{i}.gz").write_bytes(os.urandom(200_000))
    for day in range(1, 5):
        (ws / "logs" / "orchestrator.log").write_text(f"day {day}\n" * 1000)
        ok(snap_in(ws, "take", "--tier", "monthly", now=f"2026-0{day}-01T01:00:00Z"))
    listing = ok(snap_in(ws, "ls", "latest:monthly", "logs", "--json")).json()
    assert {"orchestrator.log.2.gz", "orchestrator.log.4.gz"} <= {e["name"] for e in listing}
    for i in range(2, 5):
        (ws / "logs" / f"orchestrator.log.{i}.gz").unlink()
    schedule = json.loads((ws / "backup_schedule.json").read_text())
    schedule["tiers"]["monthly"]["keep"] = 2
    (ws / "backup_schedule.json").write_text(json.dumps(schedule))
    dry = ok(snap_in(ws, "gc", "--dry-run", "--json", now="2026-05-01T00:00:00Z")).json()
    assert len(dry["forgotten"]) == 2
    res = ok(snap_in(ws, "gc", "--json", now="2026-05-01T00:00:00Z")).json()
    assert len(res["forgotten"]) == 2 and res["reclaimed_bytes"] > 0
    assert len(snapshots(ws, "monthly")) == 2
    ok(snap_in(ws, "verify"))


def test_full_host_restore(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    _take_all(ws, "2026-11-22T23:00:00Z")
    repo = tmp_path / "repo"
    # the host is lost: only the repository survives
    shutil.rmtree(ws)
    new_host = tmp_path / "new-host" / "orchestrator"
    from tests.conftest import run_snap

    listed = run_snap("list", "--json", repo=repo)
    assert listed.code == 0 and {s["tier"] for s in listed.json()} == {"weekly", "monthly", "daily"}
    res = run_snap("restore", "latest:monthly", "--target", str(new_host), repo=repo)
    assert res.code == 0, res.err
    config = json.loads((new_host / "orchestrator_config.json").read_text())
    state = new_host / config["stateFile"]
    json.loads(state.read_text())  # jq empty
    assert (new_host / config["knowledgePackDir"] / "kp-0001.md").exists()
    res = run_snap("restore", "latest:weekly", "agents", "--target", str(new_host), "--overwrite", repo=repo)
    assert res.code == 0, res.err
    for agent in ("Z", "Jay", "Rick", "Leroy"):
        assert (new_host / "agents" / agent / "SOUL.md").read_text().startswith(f"# {agent}")


def test_verification_schedule(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    res = ok(snap_in(ws, "take", "--tier", "monthly", "--json", now="2026-11-01T01:00:00Z")).json()
    assert "re-read and checksummed" in res["verified"]
    ok(snap_in(ws, "verify", "--read-data-subset", "5"))
    ok(snap_in(ws, "verify", "--read-data"))
    ok(snap_in(ws, "ls", "latest:monthly", "orchestrator_config.json"))
    ok(snap_in(ws, "ls", "latest:monthly", "knowledge-packs"))
    missing = snap_in(ws, "ls", "latest:monthly", "no-such-artifact")
    assert missing.code == ExitCode.NOT_FOUND
