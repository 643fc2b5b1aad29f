"""``snap archive PATH... --older-than AGE --tier T [--keep-newest N] [--remove]`` through the
real CLI: old files go into a pinned snapshot and leave the live disk only after their bytes
were read back from the repository; a repository that fails the read-back (a corrupted pack)
leaves every live file in place; a file changed just before its deletion is kept."""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from snapstore.errors import ExitCode
from tests.conftest import Result, run_snap

NOW = "2026-12-01T00:00:00Z"


def _logs(ws: Path) -> dict[str, bytes]:
    """Six rotated logs, a day apart from 2026-11-01, and today's live log."""
    logs = ws / "logs"
    logs.mkdir(parents=True)
    made = {}
    for day in range(1, 7):
        path = logs / f"app.log.{day}.gz"
        data = (f"day {day}\n" * 3000).encode() + os.urandom(2000)
        path.write_bytes(data)
        stamp = calendar.timegm((2026, 11, day, 12, 0, 0))
        os.utime(path, (stamp, stamp))
        made[f"logs/app.log.{day}.gz"] = data
    (logs / "app.log").write_text("today\n")
    return made


def _snap(ws: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return run_snap(*args, repo=ws.parent / "repo", cwd=ws, env={"SNAP_NOW": NOW, "TZ": "UTC", **(env or {})})


def _ok(res: Result) -> Result:
    assert res.code == 0, (res.code, res.out, res.err)
    return res


def _history(ws: Path) -> list[dict]:
    return [json.loads(line) for line in (ws.parent / "system-history.jsonl").read_text().splitlines()]


def _setup(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    ws = tmp_path / "ws"
    made = _logs(ws)
    _ok(_snap(ws, "init", "--encryption", "none"))
    return ws, made


def test_without_remove_is_a_dry_run(tmp_path: Path) -> None:
    ws, made = _setup(tmp_path)
    res = _ok(_snap(ws, "archive", "logs", "--older-than", "7d", "--tier", "archive"))
    assert "would archive and remove 6 file(s)" in res.out and "nothing was written or deleted" in res.out
    assert all((ws / name).read_bytes() == data for name, data in made.items())
    assert _ok(_snap(ws, "list", "--json")).json() == []
    assert _history(ws)[-1]["dry_run"] is True and _history(ws)[-1]["selected"] == 6


def test_remove_frees_old_files_only_after_the_read_back(tmp_path: Path) -> None:
    ws, made = _setup(tmp_path)
    res = _ok(_snap(ws, "archive", "logs", "--older-than", "7d", "--keep-newest", "3", "--tier", "archive",
                    "--remove", "--json"))
    out = res.json()
    assert isinstance(out, dict)
    # app.log (today) and the two newest rotated logs are the 3 newest: they stay
    gone = [f"logs/app.log.{d}.gz" for d in (1, 2, 3, 4)]
    assert sorted(out["removed"]) == gone and out["read_back_files"] == 4 and out["kept"] == []
    assert out["bytes_freed"] == sum(len(made[n]) for n in gone)
    for name in gone:
        assert not (ws / name).exists()
    for name in ("logs/app.log.5.gz", "logs/app.log.6.gz", "logs/app.log"):
        assert (ws / name).exists()
    # the archive holds exactly the removed files, byte for byte, and is pinned and tagged
    [snap] = _ok(_snap(ws, "list", "--json")).json()  # type: ignore[misc]
    assert snap["id"] == out["snapshot"] and snap["pinned"] is True and "archive" in snap["tags"]
    listed = {r["path"] for r in _ok(_snap(ws, "ls", "-R", snap["id"], "--json")).json()  # type: ignore[union-attr]
              if r["type"] == "file"}
    assert listed == set(gone)
    for name in gone:
        assert _ok(_snap(ws, "cat", snap["id"], name)).raw == made[name]
    event = _history(ws)[-1]
    assert event["command"] == "archive" and event["result"] == "ok" and event["removed"] == 4
    assert event["read_back"] == 4 and event["bytes_freed"] == out["bytes_freed"] and event["pinned"] is True
    # retention does not drop it: gc with keep 0 for the tier leaves a pinned snapshot
    _ok(_snap(ws, "gc", "--keep", "archive=0"))
    assert [s["id"] for s in _ok(_snap(ws, "list", "--json")).json()] == [snap["id"]]  # type: ignore[union-attr]


def _flip_every_pack(repo: Path) -> int:
    flipped = 0
    for pack in (repo / "packs").rglob("*"):
        if pack.is_file():
            with open(pack, "r+b") as handle:
                handle.seek(pack.stat().st_size // 3)
                byte = handle.read(1)
                handle.seek(-1, os.SEEK_CUR)
                handle.write(bytes([byte[0] ^ 0xFF]))
            flipped += 1
    return flipped


def test_a_corrupted_pack_fails_the_read_back_and_every_live_file_stays(tmp_path: Path) -> None:
    ws, made = _setup(tmp_path)
    # an earlier backup of the logs; its packs then go bad on disk, and the archive's take
    # deduplicates against them (the files are unchanged): only the read-back can notice
    _ok(_snap(ws, "take", "logs", "--tier", "monthly"))
    assert _flip_every_pack(ws.parent / "repo") > 0
    res = _snap(ws, "archive", "logs", "--older-than", "7d", "--tier", "archive", "--remove")
    assert res.code == ExitCode.DAMAGED, (res.code, res.out, res.err)
    assert res.err.count("\n") == 1 and "nothing was removed from the live disk" in res.err, res.err
    assert all((ws / name).read_bytes() == data for name, data in made.items())
    event = _history(ws)[-1]
    assert event["command"] == "archive" and event["result"] == "error" and event["removed"] == 0


def test_a_pack_damaged_as_it_is_written_fails_the_take_and_nothing_is_removed(tmp_path: Path) -> None:
    ws, made = _setup(tmp_path)
    res = _snap(ws, "archive", "logs", "--older-than", "7d", "--tier", "archive", "--remove",
                env={"SNAP_TEST_FLIP_PACK": "1"})
    assert res.code == ExitCode.DAMAGED, (res.code, res.out, res.err)
    assert res.err.count("\n") == 1 and "nothing was removed from the live disk" in res.err, res.err
    assert all((ws / name).read_bytes() == data for name, data in made.items())
    assert _ok(_snap(ws, "list", "--json")).json() == []


def test_a_file_changed_after_the_read_back_is_kept_and_said_so(tmp_path: Path) -> None:
    ws, made = _setup(tmp_path)
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {**os.environ, "SNAP_NOW": NOW, "TZ": "UTC", "SNAP_TEST_PAUSE_AT": "archive-before-remove",
           "SNAP_TEST_PAUSE_DIR": str(pause)}
    env.pop("SNAP_REPO", None)
    env.pop("SNAP_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "snapstore", "--repo", str(ws.parent / "repo"), "archive",
                             "logs", "--older-than", "7d", "--tier", "archive", "--remove"],
                            cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (pause / "paused-archive-before-remove").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    with open(ws / "logs" / "app.log.2.gz", "ab") as log:  # a late write to a log being archived
        log.write(b"one more line\n")
    (pause / "resume-archive-before-remove").touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    assert "snap: kept logs/app.log.2.gz: changed after it was read back" in err.decode()
    assert (ws / "logs" / "app.log.2.gz").read_bytes() == made["logs/app.log.2.gz"] + b"one more line\n"
    for day in (1, 3, 4, 5, 6):
        assert not (ws / "logs" / f"app.log.{day}.gz").exists()
    assert "removed 5 file(s)" in out.decode()
    event = _history(ws)[-1]
    assert event["removed"] == 5 and any("app.log.2.gz" in k for k in event["kept"])


def test_a_file_changed_before_the_read_back_is_kept(tmp_path: Path) -> None:
    ws, made = _setup(tmp_path)
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {**os.environ, "SNAP_NOW": NOW, "TZ": "UTC", "SNAP_TEST_PAUSE_AT": "archive-before-read-back",
           "SNAP_TEST_PAUSE_DIR": str(pause)}
    proc = subprocess.Popen([sys.executable, "-m", "snapstore", "--repo", str(ws.parent / "repo"), "archive",
                             "logs", "--older-than", "7d", "--tier", "archive", "--remove", "--json"],
                            cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (pause / "paused-archive-before-read-back").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    (ws / "logs" / "app.log.1.gz").write_bytes(b"rewritten")
    (pause / "resume-archive-before-read-back").touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    result = json.loads(out)
    assert "logs/app.log.1.gz" not in result["removed"] and len(result["removed"]) == 5
    assert (ws / "logs" / "app.log.1.gz").read_bytes() == b"rewritten"
    assert b"changed since it was archived" in err


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    ws, _made = _setup(tmp_path)
    res = _snap(ws, "archive", "nope", "--older-than", "7d", "--tier", "archive", "--remove")
    assert res.code == ExitCode.NOT_FOUND and res.err.count("\n") == 1 and "nope" in res.err
    res = _snap(ws, "archive", "logs", "--older-than", "7 days", "--tier", "archive")
    assert res.code == ExitCode.USAGE and res.err.count("\n") == 1
