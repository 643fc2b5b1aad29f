"""``snap watch`` sees what a person means by a change, through the real CLI and real inotify:
a file created after the watcher started under a glob source (a new agent's
``priority_weights.json``) is snapshotted; a bare ``touch`` is no change (content and size
decide, not the mtime alone), while a rewrite with the same size is one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.integration.test_workflows import LineReader, build_workspace, names_in, ok, snap_in, snapshots


def _start(ws: Path) -> tuple[subprocess.Popen[bytes], LineReader]:
    env = {**os.environ, "TZ": "UTC"}
    for name in ("SNAP_REPO", "SNAP_NOW", "SNAP_CONFIG"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "snapstore", "--config", str(ws / "backup_schedule.json"),
                             "watch", "--debounce", "0.5"], cwd=ws, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out = LineReader(proc)
    out.wait_for("watching")
    return proc, out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_new_agent_created_after_the_watcher_started_is_snapshotted(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "on-change"))
    proc, out = _start(ws)
    try:
        newcomer = ws / "agents" / "Newcomer"
        newcomer.mkdir()
        (newcomer / "priority_weights.json").write_text(json.dumps({"relevance": 0.7}))
        line = out.wait_for("snapshot")
        assert "saved (on-change" in line
        taken = snapshots(ws, "on-change")
        assert len(taken) == 2
        assert "agents/Newcomer/priority_weights.json" in names_in(ws, taken[-1]["id"])
        # and a later change of the new file is seen too (it is watched now)
        (newcomer / "priority_weights.json").write_text(json.dumps({"relevance": 0.8}))
        out.wait_for("snapshot")
        last = snapshots(ws, "on-change")[-1]
        assert json.loads(ok(snap_in(ws, "cat", last["id"], "agents/Newcomer/priority_weights.json")).out) == {
            "relevance": 0.8}
    finally:
        _stop(proc)


def test_touch_is_not_a_change_but_a_same_size_rewrite_is(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "on-change"))
    weights = ws / "agents" / "Z" / "priority_weights.json"
    proc, out = _start(ws)
    try:
        os.utime(weights)  # touch: a new mtime, the same bytes
        out.wait_for("checking tier on-change")
        assert "unchanged since" in out.wait_for("unchanged since")
        assert len(snapshots(ws, "on-change")) == 1
        before = weights.read_text()
        after = before.replace("0.4", "0.5")
        assert len(after) == len(before) and after != before
        weights.write_text(after)  # the same size, other content
        line = out.wait_for("snapshot")
        assert "agents/Z/priority_weights.json: modified" in line
        assert len(snapshots(ws, "on-change")) == 2
    finally:
        _stop(proc)
    # --if-changed means the same: a touch takes nothing
    os.utime(weights)
    assert "unchanged since" in ok(snap_in(ws, "take", "--tier", "on-change", "--if-changed")).out
