"""A repository shared by several hosts, in one process against the memory backend: the index
sync that brings each host up to date, and gc racing a take on another host.

What tests/s3 checks against SeaweedFS with real processes, checked here at exact points: the
faulty wrapper's hooks run the other host's work at the moment the race needs (after gc's
sync, after it announced the packs it will delete). A host is a cache directory and a host
name; the leases, the flock files and the LMDB index are the real ones.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapstore.format.snapshot import Snapshot
from snapstore.ops.backup import source_for, take_snapshot
from snapstore.ops.gc import collect_garbage
from snapstore.ops.restore import restore_snapshot
from snapstore.ops.verify import verify_repository
from snapstore.repo.indexsync import SyncReport
from snapstore.repo.repository import Repository
from snapstore.storage.faulty import Fault, FaultyBackend
from snapstore.storage.lease import GC_LEASE
from snapstore.storage.memory import MemoryBackend, serve
from snapstore.view.vfs import SnapshotView
from tests.conftest import tree_state

KiB = 1024


def _random(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@dataclass
class Host:
    """One machine using the shared repository: its host name and its own cache directory."""

    name: str
    url: str
    cache: Path
    monkeypatch: pytest.MonkeyPatch

    def _be_me(self) -> None:
        self.monkeypatch.setenv("SNAP_HOSTNAME", self.name)
        self.monkeypatch.setenv("XDG_CACHE_HOME", str(self.cache))

    @contextmanager
    def open(self, mode: str = "read") -> Iterator[Repository]:
        self._be_me()
        repo = Repository.open(self.url, mode=mode, command=f"test on {self.name}")
        try:
            yield repo
        finally:
            self._be_me()
            repo.close()

    def take(self, src: Path, repo: Repository | None = None) -> Snapshot:
        if repo is not None:
            return take_snapshot(repo, [source_for(".", str(src))], tier="daily", workers=2).snapshot
        with self.open("write") as opened:
            return take_snapshot(opened, [source_for(".", str(src))], tier="daily", workers=2).snapshot

    def restore(self, snap_id: str, target: Path) -> dict[bytes, tuple]:
        with self.open() as repo:
            restore_snapshot(SnapshotView(repo), repo.resolve(snap_id), [], str(target), workers=2)
        return tree_state(target)

    def sync_report(self) -> SyncReport:
        with self.open() as repo:
            report = repo.sync_report
        assert isinstance(report, SyncReport)
        return report


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FaultyBackend, Callable[[str], Host]]]:
    """The shared store (with hooks available) and a maker of hosts using it."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    store = FaultyBackend(MemoryBackend(default_safety_window_s=0.0))
    with serve(f"shared-{os.getpid()}-{id(store)}", store) as url:
        Repository.init(url, pack_size=256 * KiB)

        def host(name: str) -> Host:
            return Host(name, url, tmp_path / f"cache-{name}", monkeypatch)

        yield store, host


def test_index_sync_follows_what_other_hosts_add_forget_and_move(shared, tmp_path: Path) -> None:
    _store, host = shared
    alpha, beta = host("alpha"), host("beta")
    common = {f"agents/a{i}.bin": _random(96 * KiB, i) for i in range(4)}
    first = alpha.take(_tree(tmp_path / "src1", {**common, "old.log": _random(200 * KiB, 10)}))

    report = beta.sync_report()  # a new host: everything is new to it
    assert report.snapshots_added == [first.id] and report.packs_added >= 1
    assert beta.restore(first.id, tmp_path / "beta-first") == tree_state(tmp_path / "src1")

    src2 = _tree(tmp_path / "src2", {**common, "new.log": _random(150 * KiB, 11)})
    second = beta.take(src2)
    with beta.open("exclusive") as repo:
        result, _plan = collect_garbage(repo, [(repo.resolve(first.id), ("test",))], safety_window_s=0,
                                        threshold=0.05)
    assert result.packs_deleted + result.packs_rewritten >= 1 and result.deferred == 0

    report = alpha.sync_report()  # alpha's index still has the first snapshot and its packs
    assert report.snapshots_dropped == [first.id] and report.snapshots_added == [second.id]
    assert report.packs_dropped >= 1 and report.packs_added >= 1
    assert not report.bad_packs
    assert alpha.restore(second.id, tmp_path / "alpha-second") == tree_state(src2)
    with alpha.open() as repo:
        assert [s.id for s in repo.snapshots()] == [second.id]
        problems = verify_repository(repo, read_data=True).problems
    assert [p for p in problems if p.kind != "refcount"] == []  # refcounts: the test below
    assert not alpha.sync_report().changed  # nothing happened since


def test_index_sync_releases_what_a_snapshot_forgotten_elsewhere_referenced(shared, tmp_path: Path) -> None:
    _store, host = shared
    alpha, beta = host("alpha"), host("beta")
    common = {f"agents/a{i}.bin": _random(96 * KiB, i) for i in range(4)}
    first = alpha.take(_tree(tmp_path / "src1", {**common, "old.log": _random(200 * KiB, 10)}))
    beta.take(_tree(tmp_path / "src2", {**common, "new.log": _random(150 * KiB, 11)}))
    with beta.open("exclusive") as repo:
        collect_garbage(repo, [(repo.resolve(first.id), ("test",))], safety_window_s=0, threshold=0.05)
    report = alpha.sync_report()
    assert report.blobs_lost == 0 and report.notes == []
    with alpha.open() as repo:
        assert verify_repository(repo, read_data=True).problems == []


def _three_snapshots(alpha: Host, tmp_path: Path) -> tuple[dict[bytes, tuple], list[Snapshot]]:
    """Three snapshots by alpha, each with a file of its own; the state of the last one."""
    src = _tree(tmp_path / "src", {f"agents/a{i}.bin": _random(64 * KiB, i) for i in range(3)})
    snaps = []
    last: dict[bytes, tuple] = {}
    for step in range(3):
        (src / f"agents/step-{step}.bin").write_bytes(_random(64 * KiB, 50 + step))
        snaps.append(alpha.take(src))
        last = tree_state(src)
        (src / f"agents/step-{step}.bin").unlink()
    return last, snaps


def _beta_tree(tmp_path: Path) -> Path:
    """Data beta takes: shared with alpha's kept snapshot, and with the forgotten ones."""
    files = {f"agents/a{i}.bin": _random(64 * KiB, i) for i in range(3)}
    files["agents/step-0.bin"] = _random(64 * KiB, 50)  # only in a snapshot alpha's gc forgets
    files["agents/step-1.bin"] = _random(64 * KiB, 51)
    files["beta/own.bin"] = _random(64 * KiB, 1000)
    return _tree(tmp_path / "other", files)


def _finish_and_check(alpha: Host, host: Callable[[str], Host], kept: Snapshot, src_kept: dict[bytes, tuple],
                      beta_snap: Snapshot, other: Path, tmp_path: Path, store: FaultyBackend) -> None:
    checker = host("checker")
    with checker.open() as repo:
        assert {s.id for s in repo.snapshots()} == {kept.id, beta_snap.id}
    assert checker.restore(kept.id, tmp_path / "after-kept") == src_kept
    assert checker.restore(beta_snap.id, tmp_path / "after-beta") == tree_state(other)
    # with nobody else at work the next gc deletes what was deferred, and loses nothing
    before = sum(size for _n, size in store.list("packs"))
    with alpha.open("exclusive") as repo:
        result, _plan = collect_garbage(repo, [], safety_window_s=0)
    assert result.deferred == 0 and result.problems == []
    assert sum(size for _n, size in store.list("packs")) < before
    assert checker.restore(beta_snap.id, tmp_path / "final-beta") == tree_state(other)
    assert checker.restore(kept.id, tmp_path / "final-kept") == src_kept
    with checker.open() as repo:
        assert verify_repository(repo, read_data=True).problems == []


def test_gc_defers_deletions_while_another_host_takes(shared, tmp_path: Path) -> None:
    store, host = shared
    alpha, beta = host("alpha"), host("beta")
    src_kept, snaps = _three_snapshots(alpha, tmp_path)
    other = _beta_tree(tmp_path)
    taken: list[Snapshot] = []
    beta_open: list[Iterator[Repository]] = []

    def beta_takes(_op: str, _name: str) -> None:
        # gc has announced the packs it will delete; beta starts now and is still at work when
        # gc looks at the leases
        session = beta.open("write")
        repo = session.__enter__()
        beta_open.append(session)
        report = repo.sync_report
        assert isinstance(report, SyncReport) and report.packs_dropped == 0
        taken.append(beta.take(other, repo))
        alpha._be_me()

    store.add(Fault(op="replace_if", name=GC_LEASE, action="call_after", hook=beta_takes))
    with alpha.open("exclusive") as repo:
        result, _plan = collect_garbage(repo, [(repo.resolve(s.id), ("test",)) for s in snaps[:2]],
                                        safety_window_s=0)
    assert taken, "the hook never ran: gc announced no deletion"
    assert result.deferred > 0 and any("left for the next gc" in p and "on beta" in p for p in result.problems)
    for session in beta_open:
        session.__exit__(None, None, None)
    assert list(store.list("locks")) == []  # every lease released
    _finish_and_check(alpha, host, snaps[2], src_kept, taken[0], other, tmp_path, store)


def test_gc_defers_deletions_when_a_take_commits_while_it_runs(shared, tmp_path: Path) -> None:
    store, host = shared
    alpha, beta = host("alpha"), host("beta")
    src_kept, snaps = _three_snapshots(alpha, tmp_path)
    other = _beta_tree(tmp_path)
    taken: list[Snapshot] = []

    def beta_commits(_op: str, _name: str) -> None:
        # after gc's own sync, before it forgets and plans: beta takes, commits and leaves,
        # so its lease is gone by the time gc looks, but its record is there
        taken.append(beta.take(other))
        alpha._be_me()

    with alpha.open("exclusive") as repo:
        store.add(Fault(op="list_stat", name="packs", action="call", hook=beta_commits))
        result, _plan = collect_garbage(repo, [(repo.resolve(s.id), ("test",)) for s in snaps[:2]],
                                        safety_window_s=0)
    assert taken, "the hook never ran"
    assert result.deferred > 0
    assert any("a snapshot was committed by another host while gc ran" in p for p in result.problems)
    _finish_and_check(alpha, host, snaps[2], src_kept, taken[0], other, tmp_path, store)


def test_a_host_opening_during_gc_treats_announced_packs_as_gone(shared, tmp_path: Path) -> None:
    store, host = shared
    alpha, beta = host("alpha"), host("beta")
    _kept, snaps = _three_snapshots(alpha, tmp_path)
    with beta.open() as repo:  # beta knows every pack before the gc
        assert len(repo.snapshots()) == 3
    seen: list[SyncReport] = []

    def beta_syncs(_op: str, _name: str) -> None:
        with beta.open() as repo:
            assert isinstance(repo.sync_report, SyncReport)
            seen.append(repo.sync_report)
        alpha._be_me()

    store.add(Fault(op="replace_if", name=GC_LEASE, action="call_after", hook=beta_syncs))
    with alpha.open("exclusive") as repo:
        result, _plan = collect_garbage(repo, [(repo.resolve(s.id), ("test",)) for s in snaps[:2]],
                                        safety_window_s=0)
    (report,) = seen
    # the packs gc announced are still in the store, but beta's index has let them go
    assert report.packs_dropped >= 1 and report.snapshots_dropped == sorted(s.id for s in snaps[:2])
    assert result.deferred == 0 and result.problems == []  # beta had finished by the time gc looked


# -- the change marker (snapstore.repo.generation): an up-to-date host lists nothing --------
def _count_listings(store: FaultyBackend) -> list[str]:
    """Every listing of ``packs`` or ``snapshots`` from now on (names appended as they happen)."""
    seen: list[str] = []
    for prefix in ("packs", "snapshots"):
        store.add(Fault(op="list*", name=prefix, action="call", times=1_000_000,
                        hook=lambda _op, name: seen.append(name)))
    return seen


def _count_tail_reads(store: FaultyBackend) -> list[str]:
    """The packs whose end (table and footer) is read from here on; trees read for the
    references are not counted."""
    seen: list[str] = []
    inner = store.inner
    real = inner.get_range

    def reading(name: str, offset: int, length: int) -> bytes:
        size = inner.size(name)
        if name.startswith("packs/") and size is not None and offset + length >= size:
            seen.append(name)
        return real(name, offset, length)

    inner.get_range = reading  # type: ignore[method-assign]
    return seen


def test_a_damaged_table_in_an_announcement_is_read_from_the_pack(shared, tmp_path: Path) -> None:
    """The tables an announcement carries only save GETs: one that does not parse as its
    pack's (damaged, or another pack's) is replaced by the pack's own tail."""
    import base64
    import json

    store, host = shared
    alpha, beta = host("alpha"), host("beta")
    src = _tree(tmp_path / "src", {f"agents/a{i}.bin": _random(64 * KiB, i) for i in range(3)})
    alpha.take(src)
    beta.sync_report()
    (src / "agents/new.bin").write_bytes(_random(200 * KiB, 7))
    (src / "agents/other.bin").write_bytes(_random(100 * KiB, 8))
    second = alpha.take(src)
    newest = max(name for name, _size in store.list("changes"))
    doc = json.loads(store.get(newest))
    sizes = dict(doc["packs"])
    names = sorted(doc["tails"], key=lambda name: sizes[name])  # smallest pack first
    assert len(names) >= 2 and set(names) <= set(sizes)
    small, large = names[0], names[-1]
    tails = {name: base64.b64decode(doc["tails"][name]) for name in names}
    # the largest pack gets the smallest one's table, which fits inside it; the smallest a damaged one
    doc["tails"][large] = base64.b64encode(tails[small]).decode()
    doc["tails"][small] = base64.b64encode(tails[small][:-60] + bytes(60)).decode()
    store.put_bytes(newest, json.dumps(doc).encode())
    reads = _count_tail_reads(store)
    report = beta.sync_report()
    assert report.announcements == 1 and report.bad_packs == []
    assert {small, large} <= set(reads)  # those two were read from their packs
    assert beta.restore(second.id, tmp_path / "second") == tree_state(src)
    with beta.open() as repo:
        assert verify_repository(repo, read_data=True).problems == []


def test_an_up_to_date_host_lists_nothing_and_hears_of_every_change(shared, tmp_path: Path) -> None:
    store, host = shared
    alpha, beta = host("alpha"), host("beta")
    src = _tree(tmp_path / "src", {f"agents/a{i}.bin": _random(64 * KiB, i) for i in range(3)})
    first = alpha.take(src)
    assert not beta.sync_report().skipped  # a new host lists everything
    listings = _count_listings(store)
    report = beta.sync_report()
    assert report.skipped and listings == []  # nothing changed since: two GETs, no listing
    with beta.open() as repo:
        assert [s.id for s in repo.snapshots()] == [first.id]

    (src / "agents/new.bin").write_bytes(_random(64 * KiB, 99))
    second = alpha.take(src)  # announced at its end, with what it stored and the packs' tables
    listings.clear()
    tail_reads = _count_tail_reads(store)
    report = beta.sync_report()  # beta reads that announcement instead of listing
    assert not report.skipped and report.announcements == 1 and listings == []
    assert report.snapshots_added == [second.id] and report.packs_added >= 1
    assert tail_reads == []  # every new pack indexed from the announcement: no GET of a pack
    assert beta.restore(second.id, tmp_path / "second") == tree_state(src)
    assert beta.sync_report().skipped and listings == []
    # the writer's own next open lists nothing either: its announcement replaced the token its
    # index was up to date under, so its index (its own take in it) is up to date
    assert alpha.sync_report().skipped and listings == []

    with alpha.open("write") as repo:  # a pin is a change too
        repo.set_pin(repo.resolve(first.id), True)
    with beta.open() as repo:
        assert repo.sync_report is not None and repo.sync_report.announcements == 1
        assert repo.index.pinned() == {first.id}
    with alpha.open("write") as repo:  # and so is a forget
        repo.forget([repo.resolve(first.id)])
    listings.clear()
    with beta.open() as repo:
        assert repo.sync_report is not None and repo.sync_report.announcements == 1 and listings == []
        assert repo.sync_report.snapshots_dropped == [first.id]
        assert [s.id for s in repo.snapshots()] == [second.id]
        assert verify_repository(repo, read_data=True).problems == []


def test_gc_elsewhere_is_never_skipped(shared, tmp_path: Path) -> None:
    store, host = shared
    alpha, beta = host("alpha"), host("beta")
    src_kept, snaps = _three_snapshots(alpha, tmp_path)
    assert not beta.sync_report().skipped
    assert beta.sync_report().skipped
    with alpha.open("exclusive") as repo:
        assert repo.sync_report is not None and not repo.sync_report.skipped  # gc always lists
        result, _plan = collect_garbage(repo, [(repo.resolve(s.id), ("test",)) for s in snaps[:2]],
                                        safety_window_s=0)
    assert result.packs_deleted + result.packs_rewritten >= 1
    report = beta.sync_report()  # gc's announcement carries no change: beta lists, and sees the deletions
    assert not report.skipped and report.announcements == 0
    assert report.packs_dropped >= 1 and len(report.snapshots_dropped) == 2
    assert beta.restore(snaps[2].id, tmp_path / "kept") == src_kept

    # a gc lease object (here a dead one, as a gc killed half way leaves it) means: list
    assert beta.sync_report().skipped
    store.put_bytes(GC_LEASE, b"{}")
    assert not beta.sync_report().skipped
    assert not beta.sync_report().skipped  # and nothing is recorded while it is there
    store.delete(GC_LEASE)
    assert not beta.sync_report().skipped  # the first sync after it records the token again
    assert beta.sync_report().skipped


def test_a_writer_killed_before_announcing(shared, tmp_path: Path) -> None:
    _store, host = shared
    alpha, beta = host("alpha"), host("beta")
    src = _tree(tmp_path / "src", {f"agents/a{i}.bin": _random(64 * KiB, i) for i in range(3)})
    first = alpha.take(src)
    assert not beta.sync_report().skipped and beta.sync_report().skipped
    (src / "agents/new.bin").write_bytes(_random(64 * KiB, 99))
    with alpha.open("write") as repo:
        second = alpha.take(src, repo)
        # killed after its take: close() announces nothing, the flag stays
        repo.writer = False
        repo.backend.changed = False  # type: ignore[attr-defined]
    # beta lags behind (what a take that did not finish looks like) but loses nothing
    with beta.open() as repo:
        assert repo.sync_report is not None and repo.sync_report.skipped
        assert [s.id for s in repo.snapshots()] == [first.id]
    # alpha's own host lists (a writer of it is in flight), and its next writer announces
    with alpha.open() as repo:
        assert repo.sync_report is not None and not repo.sync_report.skipped
    with alpha.open("write") as repo:
        assert repo.sync_report is not None and not repo.sync_report.skipped
    report = beta.sync_report()  # what the dead writer did is unknown: beta lists
    assert not report.skipped and report.announcements == 0 and report.snapshots_added == [second.id]
    assert beta.restore(second.id, tmp_path / "second") == tree_state(src)


def test_damage_nobody_announced_is_found_by_verify(shared, tmp_path: Path) -> None:
    store, host = shared
    alpha, beta = host("alpha"), host("beta")
    src = _tree(tmp_path / "src", {f"agents/a{i}.bin": _random(64 * KiB, i) for i in range(3)})
    alpha.take(src)
    assert not beta.sync_report().skipped and beta.sync_report().skipped
    victim = next(name for name, _size in store.list("packs"))
    store.delete(victim)  # by hand, on the server: no process announced it
    beta._be_me()
    repo = Repository.open(beta.url, mode="read", command="verify", check_index=False)
    try:
        assert repo.sync_report is not None and not repo.sync_report.skipped
        assert repo.sync_report.packs_dropped == 1
        assert verify_repository(repo).problems
    finally:
        repo.close()


def test_a_long_lived_reader_follows_by_the_marker(shared, tmp_path: Path) -> None:
    store, host = shared
    alpha, beta = host("alpha"), host("beta")
    src = _tree(tmp_path / "src", {f"agents/a{i}.bin": _random(64 * KiB, i) for i in range(3)})
    first = alpha.take(src)
    with beta.open() as mounted:  # as the mount holds it
        listings = _count_listings(store)
        assert not mounted.follow_records() and listings == []  # one GET, no listing
        (src / "agents/new.bin").write_bytes(_random(64 * KiB, 99))
        second = alpha.take(src)
        beta._be_me()
        assert mounted.follow_records()
        assert {s.id for s in mounted.snapshots()} == {first.id, second.id}
        listings.clear()
        assert not mounted.follow_records() and listings == []


def test_a_reader_that_finishes_a_killed_forget_announces_it(shared, tmp_path: Path) -> None:
    store, host = shared
    alpha, beta = host("alpha"), host("beta")
    src = _tree(tmp_path / "src", {f"agents/a{i}.bin": _random(64 * KiB, i) for i in range(3)})
    first = alpha.take(src)
    (src / "agents/new.bin").write_bytes(_random(64 * KiB, 99))
    second = alpha.take(src)
    assert beta.sync_report().announcements == 0 and beta.sync_report().skipped
    # what a forget killed after its intent leaves
    store.put_bytes("intents/forget-killed.json", b'{"forget": ["%s"]}' % first.id.encode())
    with alpha.open() as repo:  # a reader finishes it
        assert repo.finished_forgets == {first.id}
    assert list(store.list("intents")) == []
    with beta.open() as repo:
        assert repo.sync_report is not None and repo.sync_report.announcements == 1
        assert [s.id for s in repo.snapshots()] == [second.id]
