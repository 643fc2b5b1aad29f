"""Seed 000's monthly routine through the real CLI: ``snap schedule`` installs gc (after the
takes) and the monthly ``verify --read-data-subset`` beside the takes (and the lines it prints
run); a tier's ``required`` artifacts are checked after every take and by ``snap verify`` (a
miss fails after the commit and alerts through the notification channel); ``before`` and
``after`` commands run around each take, with a timeout."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from snapstore.errors import ExitCode
from tests.integration.test_alerts import _event, _with_receiver
from tests.integration.test_recover import Receiver, receiver, wait_for  # noqa: F401 (fixture)
from tests.integration.test_workflows import build_workspace, history, ok, snap_in, snapshots


def _tier(ws: Path, tier: str, **settings: object) -> None:
    config = json.loads((ws / "backup_schedule.json").read_text())
    config["tiers"][tier].update(settings)
    (ws / "backup_schedule.json").write_text(json.dumps(config))


def _top(ws: Path, **settings: object) -> None:
    config = json.loads((ws / "backup_schedule.json").read_text())
    config.update(settings)
    (ws / "backup_schedule.json").write_text(json.dumps(config))


def test_schedule_installs_gc_after_the_takes_and_the_monthly_verify(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "daily", now="2026-11-01T07:00:00Z"))
    lines = [line for line in ok(snap_in(ws, "schedule", "--cron")).out.splitlines() if not line.startswith("#")]
    take, gc, verify = lines
    assert take.startswith("*/5 * * * * ") and take.endswith("take --due")
    assert gc.startswith("30 4 * * * ") and gc.endswith("--wait 3600 --quiet gc")
    assert verify.startswith("0 5 1 * * ") and verify.endswith("verify --read-data-subset 10")
    # the lines run as cron would run them (absolute paths, no shell state needed)
    for line in (gc, verify):
        argv = shlex.split(line)[5:]
        done = subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (line, done.stderr)
    assert [e["command"] for e in history(ws)][-2:] == ["gc", "verify"]

    # the config decides when, and null leaves one out
    _top(ws, gc={"schedule": "15 3 * * *"}, verify={"schedule": None})
    entries = ok(snap_in(ws, "schedule", "--cron", "--json")).json()["entries"]  # type: ignore[index]
    assert set(entries) == {"take", "gc"} and entries["gc"].startswith("15 3 * * * ")
    _top(ws, gc={"schedule": "30 4 * * *"}, verify={"schedule": "0 6 1 * *", "read_data_subset": 25})
    out = tmp_path / "units"
    res = ok(snap_in(ws, "schedule", "--systemd", "--write-dir", str(out)))
    assert sorted(p.name for p in out.iterdir()) == ["snap-gc.service", "snap-gc.timer", "snap-take.service",
                                                     "snap-take.timer", "snap-verify.service", "snap-verify.timer"]
    assert "After=local-fs.target snap-take.service" in (out / "snap-gc.service").read_text()
    assert "OnCalendar=*-*-01 06:00:00" in (out / "snap-verify.timer").read_text()
    assert "verify --read-data-subset 25" in (out / "snap-verify.service").read_text()
    assert "enable --now snap-take.timer snap-gc.timer snap-verify.timer" in res.out
    _top(ws, gc={"schedule": "0 4 31 2 *"})
    bad = snap_in(ws, "schedule", "--cron")
    assert bad.code == ExitCode.CONFIG and "never fires" in bad.err and bad.err.count("\n") == 1


def test_required_artifacts_fail_a_take_after_the_commit_and_verify_reports_them(
        tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    ws = build_workspace(tmp_path)
    _with_receiver(ws, receiver.url)
    required = ["orchestrator_config.json", "knowledge-packs", "agents/*/priority_weights.json"]
    _tier(ws, "monthly", required=required,
          sources=["orchestrator_config.json", "state", {"path": "knowledge-packs", "optional": True}, "agents"])
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "monthly", now="2026-11-01T01:00:00Z"))
    assert "no damage found" in ok(snap_in(ws, "verify")).out
    assert receiver.messages == []

    # the packs directory went missing: optional as a source, but required in the archive
    (ws / "knowledge-packs" / "kp-0001.md").unlink()
    (ws / "knowledge-packs").rmdir()
    res = snap_in(ws, "take", "--tier", "monthly", now="2026-12-01T01:00:00Z")
    assert res.code == ExitCode.PARTIAL, (res.out, res.err)
    assert "lacks required artifact(s): knowledge-packs (the rest is committed)" in res.err
    taken = snapshots(ws, "monthly")
    assert len(taken) == 2  # committed all the same: the state file is backed up that day
    assert json.loads(ok(snap_in(ws, "cat", taken[-1]["id"], "state/orchestrator_state.json")).out)["version"] == 1
    event = history(ws)[-1]
    assert event["result"] == "incomplete" and event["required_missing"] == ["knowledge-packs"]
    wait_for(lambda: len(receiver.messages) == 1, "the take alert")
    assert "knowledge-packs" in _event(receiver.messages[0])["error"]

    res = snap_in(ws, "verify")
    assert res.code == ExitCode.PARTIAL, (res.out, res.err)
    assert f"snapshot {taken[-1]['short_id']} (monthly" in res.err and "knowledge-packs" in res.err
    assert "REQUIRED ARTIFACTS MISSING" in res.out
    wait_for(lambda: len(receiver.messages) == 2, "the verify alert")
    assert _event(receiver.messages[1])["command"] == "verify"
    verify_event = history(ws)[-1]
    assert verify_event["required_missing"] == [{"snapshot": taken[-1]["id"], "missing": ["knowledge-packs"]}]

    (ws / "knowledge-packs").mkdir()
    (ws / "knowledge-packs" / "kp-0002.md").write_text("# pack 2\n")
    ok(snap_in(ws, "take", "--tier", "monthly", now="2026-12-01T02:00:00Z"))
    assert "no damage found" in ok(snap_in(ws, "verify")).out


def test_before_and_after_hooks_with_a_timeout(tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    ws = build_workspace(tmp_path)
    _with_receiver(ws, receiver.url)
    _tier(ws, "on-change", before='echo "before $SNAP_TIER" >> hooks.log',
          after='echo "after $SNAP_TIER $SNAP_RESULT $SNAP_SNAPSHOT" >> hooks.log')
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "on-change"))
    snap_id = snapshots(ws, "on-change")[-1]["id"]
    assert (ws / "hooks.log").read_text().splitlines() == ["before on-change", f"after on-change ok {snap_id}"]
    assert [h["hook"] for h in history(ws)[-1]["hooks"]] == ["before", "after"]

    # a failing before: nothing taken, after still runs, the take fails and alerts
    (ws / "hooks.log").unlink()
    _tier(ws, "on-change", before="echo 'agent Z refused to pause' >&2; exit 7")
    res = snap_in(ws, "take", "--tier", "on-change")
    assert res.code == ExitCode.ERROR and res.err.count("\n") == 1, res.err
    assert "before command" in res.err and "exited 7: agent Z refused to pause" in res.err
    assert "nothing was taken" in res.err
    assert len(snapshots(ws, "on-change")) == 1
    assert (ws / "hooks.log").read_text().splitlines() == ["after on-change error "]
    event = history(ws)[-1]
    assert event["result"] == "error" and "agent Z refused to pause" in event["hook_output"]
    wait_for(lambda: len(receiver.messages) == 1, "the hook alert")
    assert "agent Z refused to pause" in receiver.messages[0]["message"]

    # a before that hangs is killed at the timeout
    _tier(ws, "on-change", before="sleep 60", hook_timeout="1s")
    res = snap_in(ws, "take", "--tier", "on-change")
    assert res.code == ExitCode.ERROR and "still running after 1 s (killed)" in res.err, res.err
    assert len(snapshots(ws, "on-change")) == 1

    # an after that fails is a warning: the snapshot stands
    _tier(ws, "on-change", before=None, after="exit 3", hook_timeout=None)
    (ws / "agents" / "Z" / "priority_weights.json").write_text('{"relevance": 0.9}')
    res = ok(snap_in(ws, "take", "--tier", "on-change"))
    assert "snap: warning: after command 'exit 3' exited 3" in res.err
    assert len(snapshots(ws, "on-change")) == 2

    # --if-changed (and the watcher) with nothing changed runs no hook: no agent paused for nothing
    _tier(ws, "on-change", before='echo before >> hooks.log', after='echo after >> hooks.log')
    (ws / "hooks.log").unlink()
    assert "unchanged since" in ok(snap_in(ws, "take", "--tier", "on-change", "--if-changed")).out
    assert not (ws / "hooks.log").exists()
    (ws / "agents" / "Z" / "priority_weights.json").write_text('{"relevance": 0.1}')
    ok(snap_in(ws, "take", "--tier", "on-change", "--if-changed"))
    assert (ws / "hooks.log").read_text().splitlines() == ["before", "after"]
