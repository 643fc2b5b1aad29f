"""The mount namespace without FUSE: layout, attributes, inodes, reads, refresh, damage."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from snapstore.errors import RepositoryDamaged
from snapstore.format.chunker import ChunkerParams
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import FILE
from snapstore.ops.backup import source_for, take_snapshot
from snapstore.repo.repository import Repository, pack_name
from snapstore.view.namespace import (
    LATEST,
    ROOT_INODE,
    Namespace,
    group_dir_name,
    snapshot_name,
)
from snapstore.view.vfs import SnapshotView

SMALL_CHUNKS = ChunkerParams(min_size=16 * 1024, avg_size=64 * 1024, max_size=256 * 1024)
T1 = datetime(2026, 11, 20, 7, 0, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 22, 23, 0, 0, tzinfo=UTC)
T3 = datetime(2026, 11, 23, 9, 30, 15, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    src: Path
    repo_path: Path
    snaps: list[Snapshot]
    repo: Repository
    ns: Namespace
    clock: FakeClock

    def take(self, *, tier: str, when: datetime, tags: tuple[str, ...] = ()) -> Snapshot:
        with Repository.open(str(self.repo_path), mode="write") as writer:
            result = take_snapshot(writer, [source_for(".", str(self.src))], tier=tier, tags=tags, when=when,
                                   verify="none")
        self.snaps.append(result.snapshot)
        return result.snapshot

    def in_other_process(self, code: str) -> None:
        """Run Python with ``repo`` open for writing in another process (LMDB allows one
        environment per process, and the namespace holds it)."""
        script = ("import sys\nfrom snapstore.repo.repository import Repository\n"
                  "repo = Repository.open(sys.argv[1], mode='write')\n" + code + "\nrepo.close()\n")
        subprocess.run([sys.executable, "-c", script, str(self.repo_path), str(self.src)], check=True)


def _tree(root: Path) -> None:
    z = root / "agents" / "Z"
    (z / "memory").mkdir(parents=True)
    (z / "SOUL.md").write_text("# Z\nYou are Z.\n" * 50)
    (z / "memory" / "lessons.md").write_text("- verify backups\n" * 30)
    (z / "weights.bin").write_bytes(os.urandom(900_000))  # several small chunks
    os.link(z / "SOUL.md", root / "SOUL-hardlink.md")
    os.symlink("agents/Z/SOUL.md", root / "soul-link")
    (root / "empty-dir").mkdir()
    (root / "exec.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "exec.sh", 0o750)
    os.mkfifo(root / "a-fifo")
    (Path(os.fsdecode(os.fsencode(str(root)) + b"/bad-\xff-name"))).write_bytes(b"bytes name\n")
    many = root / "many"
    many.mkdir()
    for i in range(150):
        (many / f"f{i:03d}").write_text(str(i))
    os.utime(z / "SOUL.md", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    src = tmp_path / "src"
    _tree(src)
    repo_path = tmp_path / "repo"
    Repository.init(str(repo_path), chunker=SMALL_CHUNKS)
    clock = FakeClock()
    w = World(src, repo_path, [], None, None, clock)  # type: ignore[arg-type]
    w.take(tier="daily", when=T1, tags=("first", "a/b"))
    (src / "agents" / "Z" / "memory" / "lessons.md").write_text("- changed\n")
    w.take(tier="weekly", when=T2)
    w.repo = Repository.open(str(repo_path), mode="read")
    w.ns = Namespace(SnapshotView(w.repo), clock=clock)
    try:
        yield w
    finally:
        w.ns.close()
        w.repo.close()


def names(ns: Namespace, path: str) -> list[bytes]:
    return [name for name, _node in ns.readdir(ns.resolve(path).inode)]


def sdir(snap: Snapshot) -> str:
    return snapshot_name(snap).decode()


# -- layout ------------------------------------------------------------------------------------
def test_top_level_layout(world: World) -> None:
    ns = world.ns
    daily, weekly = world.snaps
    assert names(ns, "") == [b"latest", b"snapshots", b"tags", b"tiers"]
    assert sdir(daily) == f"2026-11-20T070000Z_{daily.short_id}"
    assert names(ns, "snapshots") == sorted([snapshot_name(daily), snapshot_name(weekly)])
    assert names(ns, "tiers") == [b"daily", b"weekly"]
    assert names(ns, "tiers/daily") == sorted([snapshot_name(daily), LATEST])
    assert names(ns, "tags") == [b"a%2Fb", b"first"]
    assert names(ns, "tags/first") == sorted([snapshot_name(daily), LATEST])
    assert ns.readlink(ns.resolve("latest").inode) == b"snapshots/" + snapshot_name(weekly)
    assert ns.readlink(ns.resolve("tiers/daily/latest").inode) == b"../../snapshots/" + snapshot_name(daily)
    link = ns.resolve(f"tiers/weekly/{sdir(weekly)}")
    assert ns.readlink(link.inode) == b"../../snapshots/" + snapshot_name(weekly)
    assert stat.S_ISLNK(ns.getattr(link.inode).mode)
    assert ns.getattr(link.inode).size == len(b"../../snapshots/" + snapshot_name(weekly))
    root = ns.getattr(ROOT_INODE)
    assert stat.S_ISDIR(root.mode) and stat.S_IMODE(root.mode) == 0o555
    assert ns.getattr(ns.resolve("snapshots").inode).nlink == 4  # 2 + one per snapshot


def test_group_names_are_safe_path_components() -> None:
    assert group_dir_name("weekly") == b"weekly"
    assert group_dir_name("a/b") == b"a%2Fb"
    assert group_dir_name("100%") == b"100%25"
    assert group_dir_name("..") == b"%2E%2E"
    assert group_dir_name("") == b"%00"


def test_no_latest_without_snapshots(tmp_path: Path) -> None:
    Repository.init(str(tmp_path / "repo"))
    with Repository.open(str(tmp_path / "repo"), mode="read") as repo:
        ns = Namespace(SnapshotView(repo), readahead=False)
        assert names(ns, "") == [b"snapshots", b"tags", b"tiers"]
        assert names(ns, "snapshots") == []
        with pytest.raises(FileNotFoundError):
            ns.resolve("latest")


# -- snapshot contents ---------------------------------------------------------------------------
def test_directories_list_in_name_order(world: World) -> None:
    ns = world.ns
    snap = sdir(world.snaps[-1])
    listed = names(ns, f"snapshots/{snap}")
    assert listed == sorted(os.listdir(os.fsencode(world.src)))
    assert names(ns, f"snapshots/{snap}/many") == sorted(f"f{i:03d}".encode() for i in range(150))
    assert b"bad-\xff-name" in listed


def test_attributes_equal_the_originals(world: World) -> None:
    ns = world.ns
    snap = sdir(world.snaps[-1])
    for dirpath, dirnames, filenames in os.walk(os.fsencode(world.src)):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, os.fsencode(world.src))
            st = os.lstat(full)
            attr = ns.getattr(ns.resolve(f"snapshots/{snap}/".encode() + rel).inode)
            assert attr.mode == st.st_mode, rel
            assert (attr.uid, attr.gid, attr.mtime_ns) == (st.st_uid, st.st_gid, st.st_mtime_ns), rel
            if not stat.S_ISDIR(st.st_mode):
                assert attr.size == st.st_size, rel


def test_symlinks_and_hard_links(world: World) -> None:
    ns = world.ns
    base = f"snapshots/{sdir(world.snaps[-1])}"
    link = ns.resolve(f"{base}/soul-link")
    assert ns.readlink(link.inode) == b"agents/Z/SOUL.md"
    a = ns.resolve(f"{base}/agents/Z/SOUL.md")
    b = ns.resolve(f"{base}/SOUL-hardlink.md")
    assert a.inode == b.inode
    assert ns.getattr(a.inode).nlink >= 2
    # the same path in another snapshot is another inode
    other = ns.resolve(f"snapshots/{sdir(world.snaps[0])}/agents/Z/SOUL.md")
    assert other.inode != a.inode


def test_inodes_are_stable_and_never_reused(world: World) -> None:
    ns = world.ns
    base = f"snapshots/{sdir(world.snaps[-1])}"
    seen: dict[int, bytes] = {}
    for name, node in ns.readdir(ns.resolve(f"{base}/many").inode):
        assert node.inode not in seen
        seen[node.inode] = name
    first = ns.resolve(f"{base}/many/f007")
    ns.ref(first)
    live = ns.live_nodes()
    ns.forget(first.inode, 1)  # the kernel drops it: the node goes, its number stays reserved
    assert ns.live_nodes() == live - 1
    with pytest.raises(FileNotFoundError):
        ns.getattr(first.inode)
    again = ns.resolve(f"{base}/many/f007")
    assert again.inode == first.inode
    ns.ref(first)  # handed out before it was forgotten (an open directory's listing): back again
    assert ns.getattr(first.inode).inode == first.inode
    assert ns.resolve(f"{base}/many/f008").inode != first.inode
    assert ns.resolve("snapshots").inode == ns.resolve("snapshots").inode


def test_errors_are_oserrors_with_errno(world: World) -> None:
    ns = world.ns
    base = f"snapshots/{sdir(world.snaps[-1])}"
    with pytest.raises(FileNotFoundError):
        ns.resolve(f"{base}/no-such-file")
    with pytest.raises(FileNotFoundError):
        ns.resolve("snapshots/2020-01-01T000000Z_deadbeef")
    with pytest.raises(FileNotFoundError):
        ns.resolve("tiers/monthly")
    with pytest.raises(NotADirectoryError):
        ns.lookup(ns.resolve(f"{base}/exec.sh").inode, b"x")
    with pytest.raises(OSError) as exc:
        ns.readlink(ns.resolve(f"{base}/exec.sh").inode)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(IsADirectoryError):
        ns.read(ns.resolve(base).inode, 0, 10)
    with pytest.raises(OSError) as exc:
        ns.read(ns.resolve(f"{base}/a-fifo").inode, 0, 10)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(FileNotFoundError):
        ns.getattr(10**9)


# -- reads -----------------------------------------------------------------------------------------
def test_reads_are_random_access(world: World) -> None:
    ns = world.ns
    path = world.src / "agents" / "Z" / "weights.bin"
    data = path.read_bytes()
    inode = ns.resolve(f"snapshots/{sdir(world.snaps[-1])}/agents/Z/weights.bin").inode
    entry = ns.file_entry(inode)
    assert len(list(entry.chunk_refs())) > 3
    for off, size in [(0, 10), (5, 70_000), (123_456, 300_000), (len(data) - 7, 100), (len(data), 10),
                      (len(data) + 5, 10), (0, len(data) + 100)]:
        assert ns.read(inode, off, size) == data[off : off + size], (off, size)
    assert ns.read(inode, 10, 0) == b""


def test_sequential_reads_fetch_the_next_chunk_ahead(world: World) -> None:
    ns = world.ns
    inode = ns.resolve(f"snapshots/{sdir(world.snaps[-1])}/agents/Z/weights.bin").inode
    entry = ns.file_entry(inode)
    lay = ns.view.layout(entry)
    ns.read(inode, 0, 4096)
    deadline = time.monotonic() + 5
    while ns.view.cache.get(lay.ids[1]) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ns.view.cache.get(lay.ids[1]) is not None
    assert ns.fetch_bytes(inode, lay.starts[1], 10) == 0
    assert ns.fetch_bytes(inode, lay.starts[-1], 10) == lay.lengths[-1]


def test_a_damaged_chunk_fails_only_its_file(world: World) -> None:
    ns = world.ns
    base = f"snapshots/{sdir(world.snaps[-1])}"
    inode = ns.resolve(f"{base}/agents/Z/weights.bin").inode
    entry = ns.file_entry(inode)
    assert entry.kind == FILE
    blob_id = ns.view.layout(entry).ids[2]
    loc = world.repo.index.get_chunk(blob_id)
    assert loc is not None
    with open(world.repo_path / pack_name(loc.pack), "r+b") as pack:
        pack.seek(loc.offset + loc.stored_len // 2)
        byte = pack.read(1)
        pack.seek(-1, os.SEEK_CUR)
        pack.write(bytes([byte[0] ^ 0xFF]))
    start = ns.view.layout(entry).starts[2]
    with pytest.raises(RepositoryDamaged):
        ns.read(inode, start, 100)
    assert ns.read(inode, 0, 100) == (world.src / "agents" / "Z" / "weights.bin").read_bytes()[:100]
    soul = ns.resolve(f"{base}/agents/Z/memory/lessons.md").inode
    assert ns.read(soul, 0, 1000) == b"- changed\n"


# -- refresh -----------------------------------------------------------------------------------------
def test_new_snapshots_appear_after_the_refresh_interval(world: World) -> None:
    ns = world.ns
    before = names(ns, "snapshots")
    latest_inode = ns.resolve("latest").inode
    world.in_other_process(
        "from datetime import datetime\nfrom snapstore.ops.backup import source_for, take_snapshot\n"
        f"take_snapshot(repo, [source_for('.', sys.argv[2])], tier='weekly', tags=('first',), "
        f"when=datetime.fromisoformat('{T3.isoformat()}'), verify='none')")
    assert names(ns, "snapshots") == before  # within the TTL: the cached list
    world.clock.now += 1.5
    after = names(ns, "snapshots")
    assert len(after) == 3
    third = next(name for name in after if name not in before)
    assert third.startswith(b"2026-11-23T093015Z_")
    assert ns.readlink(ns.resolve("tiers/weekly/latest").inode) == b"../../snapshots/" + third
    assert ns.readlink(latest_inode) == b"snapshots/" + third
    assert ns.resolve("latest").inode == latest_inode
    assert third in names(ns, "tags/first")
    # and forgotten ones disappear
    world.in_other_process("repo.forget([repo.snapshots()[-1]])")
    world.clock.now += 1.5
    assert names(ns, "snapshots") == before
    assert ns.readlink(latest_inode) == b"snapshots/" + snapshot_name(world.snaps[1])
