"""What restic and borg users reach for when they take, through the real ``snap`` command:
``--one-file-system`` (a real tmpfs mounted inside a source), ``--exclude-caches``
(CACHEDIR.TAG with the standard signature) and ``--stdin --stdin-name NAME`` (a dump piped in,
streamed with bounded memory)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapstore.errors import ExitCode
from tests.conftest import Result, SnapRunner

SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


def ok(res: Result) -> Result:
    assert res.code == 0, (res.code, res.out, res.err)
    return res


def paths_in(snap: SnapRunner, spec: str = "latest") -> set[str]:
    return {r["path"] for r in ok(snap("ls", "-R", spec, "--json")).json()}  # type: ignore[union-attr]


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/src/mnt``: a tmpfs mounted inside a source directory, holding one file."""
    src = tmp_path / "src"
    (src / "mnt").mkdir(parents=True)
    (src / "here.txt").write_text("on the source's file system\n")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(src / "mnt")], check=True)
    try:
        (src / "mnt" / "elsewhere.txt").write_text("on another file system\n")
        yield src
    finally:
        subprocess.run(["umount", "-l", str(src / "mnt")], check=False)


def test_one_file_system_stores_a_mount_point_empty(snap: SnapRunner, mounted: Path) -> None:
    ok(snap("init", "--encryption", "none"))
    ok(snap("take", "src", cwd=mounted.parent))
    assert {"src/here.txt", "src/mnt", "src/mnt/elsewhere.txt"} <= paths_in(snap)
    res = ok(snap("take", "src", "--one-file-system", cwd=mounted.parent))
    assert f"excluded: {mounted / 'mnt'} (another file system)" in res.out
    names = paths_in(snap)
    assert "src/here.txt" in names and "src/mnt" in names and "src/mnt/elsewhere.txt" not in names
    # a source given explicitly is taken even on another file system, as restic does
    ok(snap("take", "src/mnt", "-x", cwd=mounted.parent))
    assert "src/mnt/elsewhere.txt" in paths_in(snap)


def test_one_file_system_from_the_config_and_if_changed(tmp_path: Path, mounted: Path) -> None:
    config = tmp_path / "backup_schedule.json"
    config.write_text(json.dumps({"repository": "repo", "tiers": {
        "daily": {"sources": ["src"], "keep": 3, "one_file_system": True}}}))
    from tests.conftest import run_snap

    def snap_cfg(*args: str) -> Result:
        return run_snap("--config", str(config), *args, cwd=tmp_path)

    ok(snap_cfg("init", "--encryption", "none"))
    ok(snap_cfg("take", "--tier", "daily"))
    names = {r["path"] for r in ok(snap_cfg("ls", "-R", "latest", "--json")).json()}  # type: ignore[union-attr]
    assert "src/mnt" in names and "src/mnt/elsewhere.txt" not in names
    # what changes on the other file system is no change of the tier
    (mounted / "mnt" / "elsewhere.txt").write_text("changed over there\n")
    res = ok(snap_cfg("take", "--tier", "daily", "--if-changed"))
    assert "unchanged since" in res.out, res.out
    (mounted / "here.txt").write_text("changed here\n")
    assert "changed: src/here.txt" in ok(snap_cfg("take", "--tier", "daily", "--if-changed")).out


def _tree_with_caches(root: Path) -> None:
    (root / "proj" / "build-cache" / "objs").mkdir(parents=True)
    (root / "proj" / "src.py").write_text("print('hi')\n")
    (root / "proj" / "build-cache" / "CACHEDIR.TAG").write_bytes(SIGNATURE + b"\n# made by a build tool\n")
    (root / "proj" / "build-cache" / "objs" / "a.o").write_bytes(b"\0" * 4096)
    (root / "proj" / "build-cache" / "index").write_text("cached\n")
    # a tag without the signature marks nothing
    (root / "proj" / "notes").mkdir()
    (root / "proj" / "notes" / "CACHEDIR.TAG").write_text("not the signature\n")
    (root / "proj" / "notes" / "todo.txt").write_text("keep me\n")


def test_exclude_caches_keeps_only_the_tag(snap: SnapRunner, tmp_path: Path) -> None:
    _tree_with_caches(tmp_path)
    ok(snap("init", "--encryption", "none"))
    res = ok(snap("take", "proj", "--exclude-caches", cwd=tmp_path))
    assert f"excluded: {tmp_path / 'proj' / 'build-cache'} (a cache: CACHEDIR.TAG)" in res.out
    names = paths_in(snap)
    assert {"proj/src.py", "proj/build-cache", "proj/build-cache/CACHEDIR.TAG", "proj/notes/todo.txt",
            "proj/notes/CACHEDIR.TAG"} <= names
    assert not any(n.startswith("proj/build-cache/") and not n.endswith("CACHEDIR.TAG") for n in names)
    out = tmp_path / "out"
    ok(snap("restore", "latest", "--target", str(out)))
    assert (out / "proj" / "build-cache" / "CACHEDIR.TAG").read_bytes().startswith(SIGNATURE)
    assert not (out / "proj" / "build-cache" / "objs").exists()
    # without the option everything is taken
    ok(snap("take", "proj", cwd=tmp_path))
    assert "proj/build-cache/objs/a.o" in paths_in(snap)


def test_stdin_is_stored_as_one_file(snap: SnapRunner, tmp_path: Path) -> None:
    ok(snap("init"))  # encrypted: keyed chunk ids on the stream too
    dump = b"".join(f"INSERT INTO t VALUES ({i}, 'row {i}');\n".encode() for i in range(200_000))
    res = ok(snap("take", "--stdin", "--stdin-name", "db/orchestrator.sql", "--tier", "manual", "--json",
                  input=dump))
    taken = res.json()
    assert isinstance(taken, dict) and taken["files"] == 1 and taken["bytes"] == len(dump)
    assert taken["paths"] == ["<stdin>/db/orchestrator.sql"]
    rows = {r["path"]: r for r in ok(snap("ls", "-R", "latest", "--json")).json()}  # type: ignore[union-attr]
    assert rows["db"]["type"] == "dir" and rows["db/orchestrator.sql"]["size"] == len(dump)
    assert ok(snap("cat", "latest", "db/orchestrator.sql")).raw == dump
    # the same dump again deduplicates completely
    again = ok(snap("take", "--stdin", "--stdin-name", "db/orchestrator.sql", "--json", input=dump)).json()
    assert isinstance(again, dict) and again["new_chunks"] == 2  # only the two trees (their times are new)
    assert ok(snap("verify", "--read-data")).code == 0


def test_stdin_bad_input(snap: SnapRunner) -> None:
    ok(snap("init", "--encryption", "none"))
    for name in ("/etc/passwd", "../x", "a//b", ""):
        res = snap("take", "--stdin", "--stdin-name", name, input=b"x")
        assert res.code == ExitCode.USAGE and res.err.count("\n") == 1, (name, res.err)
    res = snap("take", "--stdin", "somepath", input=b"x")
    assert res.code == ExitCode.USAGE and "--stdin takes standard input only" in res.err
    assert ok(snap("list", "--json")).json() == []


def test_stdin_streams_with_bounded_memory(snap: SnapRunner, tmp_path: Path) -> None:
    """192 MiB piped in: the take's peak memory stays well under the stream's size (it is
    chunked as it arrives, never held whole)."""
    ok(snap("init", "--encryption", "none"))
    size = 192 * 1024 * 1024
    probe = (
        "import os, resource, subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-m', 'snapstore', '--repo', sys.argv[1], 'take', '--stdin',"
        " '--stdin-name', 'big.bin', '--json', '-q'], stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
        "block = os.urandom(1 << 20)\n"
        f"for i in range({size >> 20}):\n"
        "    p.stdin.write(bytes([i & 255]) + block[1:])\n"
        "p.stdin.close()\n"
        "out = p.stdout.read()\n"
        "assert p.wait() == 0\n"
        "sys.stdout.write(out.decode())\n"
        "sys.stderr.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, str(snap.repo)],  # type: ignore[attr-defined]
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    taken = json.loads(proc.stdout)
    assert taken["bytes"] == size
    peak_kib = int(proc.stderr.decode().strip().splitlines()[-1])
    assert peak_kib * 1024 < size * 3 // 4, f"peak {peak_kib} KiB for a {size >> 20} MiB stream"
