"""A take of many small files: past the first few hundred they are read by reader processes in
batches (snapstore.ops.smallfiles). The round trip, dedup, the files cache, an unreadable file
and a file changed mid-read must come out exactly as on the take's own reading path.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

from snapstore.errors import ExitCode
from snapstore.ops.backup import POOL_AFTER
from tests.conftest import Result, SnapRunner, tree_state
from tests.integration.test_take_input import wait_for

FILES = POOL_AFTER + 500  # most of them go through the reader processes


def ok(res: Result) -> Result:
    assert res.code == 0, (res.code, res.out, res.err)
    return res


def make_tree(root: Path, seed: int = 7) -> dict[str, bytes]:
    """FILES files of 0-40 KB in 10 directories, some of them equal, a few past one chunk
    (256 KiB), a hard-linked pair and a symlink; returns the contents by relative path."""
    rng = random.Random(seed)
    contents: dict[str, bytes] = {}
    for i in range(FILES):
        rel = f"d{i % 10}/f{i:04d}.txt"
        if i % 97 == 0:
            data = b""
        elif i % 50 == 1:
            data = b"the same small file\n" * 40  # dedup: stored once
        elif i % 211 == 2:
            data = rng.randbytes(300 * 1024)  # more than one chunk's minimum
        else:
            data = (f"file {i}\n".encode() + rng.randbytes(rng.randint(0, 40_000)).hex().encode())[: 40_000]
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        # an exact time in the past: a time within the take's tick is not trusted to the files cache
        os.utime(path, ns=(1_700_000_000_000_000_000 + i, 1_700_000_000_000_000_000 + i))
        contents[rel] = data
    os.link(root / "d3/f0003.txt", root / "d9/hardlink.txt")
    os.symlink("f0004.txt", root / "d4/link")
    for rel in XATTR_FILES:  # read with their content: by a reader process, by the chunking reader
        os.setxattr(root / rel, "user.origin", rel.encode())
    return contents


XATTR_FILES = (f"d7/f{FILES - 3:04d}.txt", "d2/f0002.txt")


def test_many_small_files_round_trip_dedup_and_files_cache(snap: SnapRunner, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    ok(snap("init"))
    # a change within two seconds of a take whose time looks coarse (a whole microsecond: one
    # ctime in a thousand) is not trusted to the files cache; past that, every file is
    time.sleep(2.1)
    first = ok(snap("take", "src", "--json", cwd=tmp_path)).json()
    assert first["files"] == FILES + 1
    # equal contents are one blob; an empty file is none
    distinct = {p.read_bytes() for p in src.rglob("*") if p.is_file() and not p.is_symlink()} - {b""}
    assert first["new_chunks"] >= len(distinct) and first["new_chunks"] < len(distinct) + 80  # + trees, big ones
    target = tmp_path / "out"
    ok(snap("restore", "latest", "--target", str(target)))
    assert tree_state(target / "src") == tree_state(src)
    for rel in XATTR_FILES:
        assert os.getxattr(target / "src" / rel, "user.origin") == rel.encode()
        assert os.listxattr(target / "src" / rel) == ["user.origin"]
    assert os.listxattr(target / "src" / f"d7/f{FILES - 13:04d}.txt") == []  # its neighbour has none
    ok(snap("verify", "--read-data"))
    # nothing changed: the files cache proves every file unchanged, nothing is read
    again = ok(snap("take", "src", "--json", cwd=tmp_path)).json()
    assert again["read_bytes"] == 0 and again["new_chunks"] == 0  # the same trees too


def test_unreadable_small_file_in_a_batch_is_named_and_the_rest_stored(snap: SnapRunner, tmp_path: Path) -> None:
    src = tmp_path / "src"
    contents = make_tree(src)
    ok(snap("init"))
    victim = f"f{FILES - 5:04d}.txt"  # late in the walk: read by a reader process
    res = snap("take", "src", "--json", cwd=tmp_path, env={"SNAP_TEST_UNREADABLE": victim})
    assert res.code == ExitCode.PARTIAL, res.err
    data = res.json()
    assert data["unreadable"] == 1 and victim in data["errors"][0]
    target = tmp_path / "out"
    ok(snap("restore", "latest", "--target", str(target)))
    restored = {str(p.relative_to(target / "src")) for p in (target / "src").rglob("*") if p.is_file()}
    assert not any(r.endswith(victim) for r in restored)
    assert all((target / "src" / rel).read_bytes() == body for rel, body in contents.items() if victim not in rel)


def _take_paused_at_target(snap: SnapRunner, tmp_path: Path, ctl: Path) -> subprocess.Popen[bytes]:
    """``snap take src`` started in the background, paused by a reader process in the middle
    of reading ``src/zz/target.txt`` (``ctl/paused-1`` exists when this returns)."""
    ctl.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SNAP_REPO", "SNAP_CONFIG")}
    env.update(SNAP_TEST_PAUSE_READ="target.txt", SNAP_TEST_PAUSE_DIR=str(ctl))
    proc = subprocess.Popen([sys.executable, "-m", "snapstore", "--repo", str(snap.repo),  # type: ignore[attr-defined]
                             "take", "src"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(ctl / "paused-1", proc)
    return proc


def test_small_file_changed_mid_read_by_a_reader_process_is_read_again(snap: SnapRunner, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    late = src / "zz" / "target.txt"  # the last directory in the walk: a reader process reads it
    late.parent.mkdir()
    late.write_bytes(b"old content\n" * 100)
    os.utime(late, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    ok(snap("init"))
    ctl = tmp_path / "ctl"
    proc = _take_paused_at_target(snap, tmp_path, ctl)
    late.write_bytes(b"new content, longer than the old\n" * 100)
    (ctl / "resume-1").touch()
    wait_for(ctl / "paused-2", proc)  # it is read a second time
    (ctl / "resume-2").touch()
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert ok(snap("cat", "latest", "src/zz/target.txt")).raw == late.read_bytes()
    entry = next(e for e in snap("ls", "latest", "src/zz", "--json").json() if e["name"] == "target.txt")  # type: ignore[union-attr]
    assert entry["mtime_ns"] == late.stat().st_mtime_ns  # the metadata of what was read


def _grandchildren(pid: int) -> list[int]:
    """The processes two levels below ``pid`` (from /proc): the reader processes, which the fork
    server (a child, beside multiprocessing's resource tracker) starts."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    return [grandchild for child in children.get(pid, []) for grandchild in children.get(child, [])]


def test_a_reader_process_killed_mid_take_fails_it_in_one_line(snap: SnapRunner, tmp_path: Path) -> None:
    import signal

    src = tmp_path / "src"
    make_tree(src)
    late = src / "zz" / "target.txt"
    late.parent.mkdir()
    late.write_bytes(b"content\n" * 100)
    ok(snap("init"))
    ctl = tmp_path / "ctl"
    proc = _take_paused_at_target(snap, tmp_path, ctl)
    readers = _grandchildren(proc.pid)
    killed = 0
    for pid in readers:
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass  # a short-lived process listed in /proc a moment ago: gone by itself
    assert killed, readers
    _out, err = proc.communicate(timeout=300)
    text = err.decode()
    assert proc.returncode == ExitCode.ERROR and "reader process" in text, text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    assert snap("list", "--json").json() == []  # nothing committed
    ok(snap("take", "src", cwd=tmp_path))  # and the next take works
