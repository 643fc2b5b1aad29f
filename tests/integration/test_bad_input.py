"""Bad input gets one line and a documented exit code, and writes nothing: no tracebacks.

Each test feeds the exact input that once crashed a command (issue 14, finding 12; issue 17:
an import of a file that is not an archive) through the real ``snap`` command.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from snapstore.errors import ExitCode
from tests.conftest import Result, SnapRunner, run_snap


def one_line_error(res: Result, code: int, *words: str) -> None:
    assert res.code == code, (res.code, res.out, res.err)
    assert "Traceback" not in res.err and res.err.count("\n") == 1, res.err
    assert res.err.startswith(("snap: error: ", '{"error": ')), res.err
    for word in words:
        assert word in res.err, res.err


def workspace(tmp_path: Path, tiers: dict) -> Path:
    ws = tmp_path / "ws"
    (ws / "data").mkdir(parents=True)
    (ws / "data" / "state.json").write_text('{"ok": true}\n')
    (ws / "backup_schedule.json").write_text(json.dumps({"repository": "../repo", "tiers": tiers}))
    ok = run_snap("init", cwd=ws, env={"SNAP_CONFIG": str(ws / "backup_schedule.json")})
    assert ok.code == 0, ok.err
    return ws


def snapshots(repo: Path) -> list[str]:
    return sorted(os.listdir(repo / "snapshots")) if (repo / "snapshots").exists() else []


def test_cron_expression_that_never_fires(tmp_path: Path) -> None:
    ws = workspace(tmp_path, {"daily": {"schedule": "0 7 * * *", "keep": 3, "sources": ["data"]}})
    # a config with a valid tier first, so the repository exists; then the impossible date
    (ws / "backup_schedule.json").write_text(json.dumps({"repository": "../repo", "tiers": {
        "feb31": {"schedule": "0 0 31 2 *", "keep": 3, "sources": ["data"]}}}))
    env = {"SNAP_NOW": "2026-12-01T12:00:00Z", "TZ": "UTC"}
    for args in (["take", "--due"], ["due"], ["due", "--json"]):
        res = run_snap(*args, cwd=ws, env=env)
        one_line_error(res, ExitCode.CONFIG, "feb31", "0 0 31 2 *", "never fires")
    assert snapshots(tmp_path / "repo") == []


def test_huge_durations(tmp_path: Path) -> None:
    ws = workspace(tmp_path, {"daily": {"keep_within": "30d", "sources": ["data"]}})
    assert run_snap("take", "--tier", "daily", cwd=ws).code == 0
    before = snapshots(tmp_path / "repo")
    (ws / "backup_schedule.json").write_text(json.dumps({"repository": "../repo", "tiers": {
        "daily": {"keep_within": "99999999999999d", "sources": ["data"]}}}))
    for args in (["gc"], ["gc", "--dry-run"], ["take", "--tier", "daily"]):
        one_line_error(run_snap(*args, cwd=ws), ExitCode.CONFIG, "keep_within", "99999999999999d", "1000y")
    assert snapshots(tmp_path / "repo") == before

    # the longest accepted one works even with a simulated "now" near year 1
    (ws / "backup_schedule.json").write_text(json.dumps({"repository": "../repo", "tiers": {
        "daily": {"keep_within": "1000y", "sources": ["data"]}}}))
    res = run_snap("gc", "--dry-run", cwd=ws, env={"SNAP_NOW": "0001-01-05T00:00:00Z"})
    assert res.code == 0 and "1 remain" in res.out, (res.out, res.err)

    plain = tmp_path / "plain"
    plain.mkdir()
    for since in ("99999999999999d", "5000y"):
        res = run_snap("--repo", str(tmp_path / "repo"), "history", "--since", since, cwd=plain)
        one_line_error(res, ExitCode.USAGE, "--since", since)


def test_garbage_snap_now(snap: SnapRunner, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x\n")
    assert snap("init").code == 0
    res = snap("take", str(data), env={"SNAP_NOW": "garbage"})
    one_line_error(res, ExitCode.USAGE, "SNAP_NOW", "garbage")
    assert snapshots(tmp_path / "repo") == []
    events = [json.loads(line) for line in (tmp_path / "system-history.jsonl").read_text().splitlines()]
    assert events[-1]["command"] == "take" and events[-1]["exit_code"] == ExitCode.USAGE
    assert "SNAP_NOW" in events[-1]["error"]


def test_import_of_a_file_that_is_not_an_archive(snap: SnapRunner, tmp_path: Path) -> None:
    assert snap("init").code == 0
    notes = tmp_path / "notes-20261101.txt"
    notes.write_text("just some notes, not a tar archive\n" * 40)
    one_line_error(snap("import", str(notes)), ExitCode.ERROR, str(notes), "not a readable tar archive")
    empty = tmp_path / "empty.tar.gz"
    empty.write_bytes(b"")
    one_line_error(snap("import", str(empty)), ExitCode.ERROR, str(empty), "not a readable tar archive")
    assert snapshots(tmp_path / "repo") == []
