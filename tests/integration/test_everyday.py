"""The seeds' everyday workflows without their sharp edges, through the real ``snap`` command:
optional and missing sources (incomplete snapshots), unknown tiers and ``--ad-hoc``, global
options on either side of the command, ``--version`` / ``snap version``, tag validation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from snapstore.errors import ExitCode
from tests.integration.test_workflows import build_workspace, history, ok, snap_in, snapshots


def _set_tier(ws: Path, tier: str, settings: dict) -> None:
    config = json.loads((ws / "backup_schedule.json").read_text())
    config["tiers"][tier] = settings
    (ws / "backup_schedule.json").write_text(json.dumps(config))


def test_an_optional_source_missing_is_a_warning_and_the_rest_is_taken(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    _set_tier(ws, "monthly", {"schedule": "0 1 1 * *", "keep": 12,
                              "sources": ["state", {"path": "logs", "optional": True}]})
    ok(snap_in(ws, "init"))
    shutil.rmtree(ws / "logs")
    res = ok(snap_in(ws, "take", "--tier", "monthly"))
    assert "snap: warning: optional source missing:" in res.err and "logs" in res.err
    snap = snapshots(ws, "monthly")[-1]
    assert snap["incomplete"] is False
    names = {row["path"] for row in ok(snap_in(ws, "ls", "-R", snap["id"], "--json")).json()}  # type: ignore[union-attr]
    assert "state/orchestrator_state.json" in names and not any(n.startswith("logs") for n in names)
    event = history(ws)[-1]
    assert event["result"] == "ok" and any("logs" in w for w in event["warnings"])


def test_a_missing_required_source_fails_after_the_rest_is_committed(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    _set_tier(ws, "monthly", {"schedule": "0 1 1 * *", "keep": 1, "sources": ["state", "logs"]})
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "monthly", now="2026-11-01T01:00:00Z"))
    complete = snapshots(ws, "monthly")[-1]
    shutil.rmtree(ws / "logs")
    (ws / "state" / "orchestrator_state.json").write_text('{"version": 2}')
    res = snap_in(ws, "take", "--tier", "monthly", now="2026-12-01T01:00:00Z")
    assert res.code == ExitCode.PARTIAL, res.err
    assert "required source missing" in res.err and "logs" in res.err and "marked incomplete" in res.err
    listed = snapshots(ws, "monthly")
    assert len(listed) == 2
    partial = listed[-1]
    assert partial["incomplete"] is True and any("logs" in m for m in partial["missing"])
    # the critical state file was backed up that day all the same
    assert ok(snap_in(ws, "cat", partial["id"], "state/orchestrator_state.json")).out == '{"version": 2}'
    # 'latest' passes over the incomplete snapshot; its id still names it
    assert json.loads(ok(snap_in(ws, "cat", "latest:monthly", "state/orchestrator_state.json")).out) == {
        "version": 1, "tasks": []}
    event = history(ws)[-1]
    assert event["result"] == "incomplete" and event["exit_code"] == ExitCode.PARTIAL
    assert event["snapshot"] == partial["id"] and event["incomplete"] is True
    assert json.loads((ws / "alert.json").read_text())["exit_code"] == ExitCode.PARTIAL  # alerted
    # keep 1: the incomplete one does not push the complete one out
    ok(snap_in(ws, "gc", now="2026-12-01T02:00:00Z"))
    assert [s["id"] for s in snapshots(ws, "monthly")] == [complete["id"], partial["id"]]


def test_unknown_tier_is_an_error_unless_ad_hoc_and_a_config_tier_refuses_paths(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    res = snap_in(ws, "take", "--tier", "hourly", "state")
    assert res.code == ExitCode.USAGE and "unknown tier 'hourly'" in res.err and "--ad-hoc" in res.err
    res = snap_in(ws, "take", "--tier", "on-change", "state")
    assert res.code == ExitCode.USAGE and "takes the sources in" in res.err
    assert snapshots(ws) == []  # nothing was taken or silently re-sourced
    ok(snap_in(ws, "take", "--tier", "hourly", "--ad-hoc", "state"))
    assert [s["tier"] for s in snapshots(ws)] == ["hourly"]
    ok(snap_in(ws, "take", "state"))  # the default tier 'manual' takes paths as ever
    assert "--ad-hoc" in ok(snap_in(ws, "take", "--help")).out


def test_global_options_before_or_after_the_command(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "weekly"))
    other = tmp_path / "other"
    ok(snap_in(ws, "init", str(other)))
    # --repo after the command: the other (empty) repository
    assert ok(snap_in(ws, "list", "--json", "--repo", str(other))).json() == []
    assert len(ok(snap_in(ws, "--json", "list")).json()) == 1  # type: ignore[arg-type]
    ok(snap_in(ws, "gc", "--wait", "2", "--dry-run"))
    target = tmp_path / "restored"
    res = ok(snap_in(ws, "--json", "restore", "latest", "--target", str(target)))
    assert res.json()["target"] == str(target)  # type: ignore[index]
    assert (target / "agents" / "Z" / "SOUL.md").is_file()


def test_version_and_the_snapstore_console_script(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    flag = ok(snap_in(ws, "--version")).out
    assert flag.startswith("snapstore ") and "repository format 1" in flag
    assert ok(snap_in(ws, "version")).out == flag
    info = ok(snap_in(ws, "version", "--json")).json()
    assert info["repository_format"] == 1 and info["snapstore"]  # type: ignore[index]
    script = Path(sys.executable).parent / "snapstore"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout == flag


def test_tags_are_validated_on_the_command_line(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    for bad in ("two words", "a,b", ""):
        res = snap_in(ws, "take", "--tag", bad, "state")
        assert res.code == ExitCode.USAGE and "invalid tag" in res.err and "Traceback" not in res.err
    assert snapshots(ws) == []
    ok(snap_in(ws, "take", "--tag", "pre-upgrade", "state"))
    assert snapshots(ws)[-1]["tags"] == ["pre-upgrade"]


def test_history_audits_gc_forget_and_restore(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    pad = ws / "agents" / "Z" / "memory" / "pad.bin"
    ids = []
    for day in (1, 2, 3):
        pad.write_bytes(os.urandom(20000))
        ids.append(ok(snap_in(ws, "take", "--tier", "daily", "--json",
                              now=f"2026-11-0{day}T07:00:00Z")).json()["id"])  # type: ignore[index]
    res = ok(snap_in(ws, "gc", "--dry-run", "--keep", "daily=1", now="2026-11-04T00:00:00Z"))
    dry = history(ws)[-1]
    assert dry["command"] == "gc" and dry["dry_run"] is True and dry["bytes_freed"] == 0 and dry["would_free"] > 0
    assert sorted(f["id"] for f in dry["forgotten"]) == sorted(ids[:2])
    assert all("forget" in " ".join(f["reasons"]) or f["reasons"] for f in dry["forgotten"])
    assert len(snapshots(ws)) == 3  # nothing changed
    ok(snap_in(ws, "gc", "--keep", "daily=1", now="2026-11-04T00:00:00Z"))
    real = history(ws)[-1]
    assert real["dry_run"] is False and sorted(f["id"] for f in real["forgotten"]) == sorted(ids[:2])
    assert real["bytes_freed"] > 0 and "would_free" not in real
    table = ok(snap_in(ws, "history")).out
    assert "gc (dry run)" in table and "forgot 2: " in table and ids[0][:8] in table
    ok(snap_in(ws, "forget", ids[2][:8]))
    forgot = history(ws)[-1]
    assert forgot["command"] == "forget" and forgot["forgotten"][0]["id"] == ids[2]
    assert forgot["forgotten"][0]["reasons"] == ["named on the command line"]
    assert "dry run" not in res.out


def test_restore_events_carry_paths_and_targets(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "weekly"))
    target = tmp_path / "out"
    ok(snap_in(ws, "restore", "latest", "agents/Z/SOUL.md", "--target", str(target)))
    event = history(ws)[-1]
    assert event["command"] == "restore" and event["paths"] == ["agents/Z/SOUL.md"]
    assert event["target"] == str(target) and (target / "agents" / "Z" / "SOUL.md").is_file()
    assert f"agents/Z/SOUL.md -> {target}" in ok(snap_in(ws, "history")).out


def test_approval_is_recorded_and_its_absence_marked_and_alerted(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    config = json.loads((ws / "backup_schedule.json").read_text())
    config["tiers"]["on-change"]["require_approval"] = True
    (ws / "backup_schedule.json").write_text(json.dumps(config))
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "on-change", "--approved-by", "alice", "--reason", "new weights for Z"))
    approved = snapshots(ws)[-1]
    assert approved["approved_by"] == "alice" and approved["reason"] == "new weights for Z"
    assert "unapproved" not in approved
    event = history(ws)[-1]
    assert event["approved_by"] == "alice" and event["reason"] == "new weights for Z" and event["result"] == "ok"
    assert not (ws / "alert.json").exists()
    (ws / "agents" / "Z" / "priority_weights.json").write_text('{"z": 9}')
    res = ok(snap_in(ws, "take", "--tier", "on-change"))  # taken all the same: the trail has no holes
    assert "requires approval" in res.err
    unapproved = snapshots(ws)[-1]
    assert unapproved["unapproved"] is True and unapproved["id"] != approved["id"]
    event = history(ws)[-1]
    assert event["result"] == "unapproved" and event["unapproved"] is True
    assert json.loads((ws / "alert.json").read_text())["result"] == "unapproved"  # alerted
    listing = ok(snap_in(ws, "list")).out
    assert f"{unapproved['short_id']}?" in listing and "? = unapproved" in listing
    diff = ok(snap_in(ws, "diff", approved["id"], unapproved["id"])).out
    assert "approved by alice" in diff and "UNAPPROVED" in diff


def test_du_shows_sizes_by_directory_the_way_stats_by_path_does(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    (ws / "agents" / "Z" / "memory" / "big.bin").write_bytes(os.urandom(300_000))
    ok(snap_in(ws, "take", "--tier", "weekly"))
    du = ok(snap_in(ws, "du", "latest", "agents", "--json")).json()
    stats = ok(snap_in(ws, "stats", "--by", "path", "--path", "agents", "--json", "latest")).json()
    by_path = {row["path"]: row for row in du["paths"]}  # type: ignore[index]
    assert by_path["agents/Z"]["logical_bytes"] > 300_000 > by_path["agents/Jay"]["logical_bytes"]
    assert {r["path"]: r["stored_bytes"] for r in stats["paths"]} == {  # type: ignore[index]
        p: r["stored_bytes"] for p, r in by_path.items()}  # one computation
    assert du["unique_bytes"] > 300_000  # type: ignore[index]  # the only snapshot: all of it is its own
    text = ok(snap_in(ws, "du", "latest", "agents")).out
    assert "agents/Z/" in text and "UNIQUE" in text and "forgetting it would free" in text
    assert snap_in(ws, "du", "latest", "no/such").code == ExitCode.NOT_FOUND
    # a second snapshot in which only Z's memory changed: what each directory alone holds
    (ws / "agents" / "Z" / "memory" / "big.bin").write_bytes(os.urandom(200_000))
    ok(snap_in(ws, "take", "--tier", "weekly"))
    second = {row["path"]: row for row in ok(snap_in(ws, "du", "latest", "agents", "--json")).json()["paths"]}
    assert 200_000 < second["agents/Z"]["unique_bytes"] < 260_000  # the new big.bin and Z's new trees
    assert second["agents/Jay"]["unique_bytes"] == 0  # the same in both snapshots


def test_exclude_file_leaves_out_what_it_lists(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    ok(snap_in(ws, "init"))
    (ws / "agents" / "Z" / "memory" / "scratch.tmp").write_text("tmp")
    (ws / "excludes.txt").write_text("# scratch files\n*.tmp\n\nSOUL.md\n")
    ok(snap_in(ws, "take", "--exclude-file", "excludes.txt", "--json", "agents"))
    names = {row["path"] for row in ok(snap_in(ws, "ls", "-R", "latest", "--json")).json()}  # type: ignore[union-attr]
    assert "agents/Z/memory" in names and not any(n.endswith((".tmp", "SOUL.md")) for n in names)
    res = snap_in(ws, "take", "--exclude-file", "nope.txt", "agents")
    assert res.code == ExitCode.USAGE and "nope.txt" in res.err and len(snapshots(ws)) == 1


def test_latest_good_of_an_absolute_state_file_goes_back_in_place(tmp_path: Path) -> None:
    ws = build_workspace(tmp_path)
    live = tmp_path / "var" / "state.json"
    live.parent.mkdir()
    live.write_text('{"tasks": [1]}')
    cfg = json.loads((ws / "orchestrator_config.json").read_text())
    cfg["stateFile"] = str(live)
    (ws / "orchestrator_config.json").write_text(json.dumps(cfg))
    ok(snap_in(ws, "init"))
    ok(snap_in(ws, "take", "--tier", "monthly"))
    live.write_text("{corrupt")
    res = ok(snap_in(ws, "restore", "--latest-good", str(live), "--check", "json", "--target", "."))
    assert "use --target / to restore it in place" in res.err  # the old trap is named
    assert live.read_text() == "{corrupt"
    ok(snap_in(ws, "restore", "--latest-good", str(live), "--check", "json", "--target", "/"))
    assert json.loads(live.read_text()) == {"tasks": [1]}
    aside = [p for p in live.parent.iterdir() if p.name.startswith("state.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_text() == "{corrupt"
    event = history(ws)[-1]
    assert event["paths"] == [str(live).lstrip("/")] and event["target"] == "/" and event["mode"] == "latest-good"
