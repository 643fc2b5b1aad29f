"""Stored refcounts always equal a fresh recount, whatever sequence of take / forget / gc."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from snapstore.ops.backup import source_for, take_snapshot
from snapstore.ops.gc import collect_garbage
from snapstore.ops.refcheck import refcount_mismatches
from snapstore.repo.refcount import add_reference, drop_reference
from snapstore.repo.repository import Repository
from snapstore.view.vfs import SnapshotView

FILES = [f"agents/{a}/{f}" for a in ("Z", "Jay") for f in ("SOUL.md", "memory/notes.md", "weights.json")]
CONTENTS = [b"", b"alpha\n" * 50, b"beta\n" * 70, os.urandom(300_000), b"gamma" * 1000]


class RepoMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="snap-state-")
        self.src = os.path.join(self.dir, "src")
        os.makedirs(self.src)
        Repository.init(os.path.join(self.dir, "repo"), pack_size=64 * 1024)
        self.expected: dict[str, dict[str, bytes]] = {}
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)

    def _repo(self, mode: str = "write") -> Repository:
        return Repository.open(os.path.join(self.dir, "repo"), mode=mode)

    @rule(path=st.sampled_from(FILES), content=st.sampled_from(CONTENTS))
    def write_file(self, path: str, content: bytes) -> None:
        full = os.path.join(self.src, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(content)

    @rule(path=st.sampled_from(FILES))
    def remove_file(self, path: str) -> None:
        full = os.path.join(self.src, path)
        if os.path.exists(full):
            os.unlink(full)

    @rule()
    def take(self) -> None:
        self.clock += timedelta(hours=1)
        with self._repo() as repo:
            snap = take_snapshot(repo, [source_for(".", self.src)], when=self.clock).snapshot
        state = {}
        for dirpath, _dirs, files in os.walk(self.src):
            for name in files:
                full = os.path.join(dirpath, name)
                with open(full, "rb") as f:
                    state[os.path.relpath(full, self.src)] = f.read()
        self.expected[snap.id] = state

    @precondition(lambda self: self.expected)
    @rule(data=st.data())
    def forget(self, data: st.DataObject) -> None:
        snap_id = data.draw(st.sampled_from(sorted(self.expected)))
        with self._repo() as repo:
            repo.forget([repo.resolve(snap_id)])
        del self.expected[snap_id]

    @rule(threshold=st.sampled_from([0.0, 0.1, 0.9]))
    def gc(self, threshold: float) -> None:
        with self._repo("exclusive") as repo:
            collect_garbage(repo, [], threshold=threshold)

    @invariant()
    def refcounts_match_a_fresh_count(self) -> None:
        with self._repo("read") as repo:
            assert refcount_mismatches(repo) == []

    @invariant()
    def every_snapshot_reads_back(self) -> None:
        with self._repo("read") as repo:
            view = SnapshotView(repo)
            assert {s.id for s in repo.snapshots()} == set(self.expected)
            for snap_id, files in self.expected.items():
                snap = repo.resolve(snap_id)
                for rel, content in files.items():
                    entry = view.lookup(snap, rel)
                    assert b"".join(view.iter_file(entry)) == content

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


RepoMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestRepoStateful = RepoMachine.TestCase


class DictCounts:
    def __init__(self, trees: dict[bytes, list[bytes]], leaves: set[bytes]) -> None:
        self.trees = trees
        self.values = dict.fromkeys(list(trees) + list(leaves), 0)

    def count(self, blob_id: bytes) -> int:
        return self.values[blob_id]

    def set_count(self, blob_id: bytes, value: int) -> None:
        self.values[blob_id] = value

    def is_tree(self, blob_id: bytes) -> bool:
        return blob_id in self.trees


def test_add_then_drop_returns_to_zero_and_frees_everything() -> None:
    trees = {b"root": [b"sub", b"c1", b"c1"], b"sub": [b"c2"], b"root2": [b"sub", b"c3"]}
    store = DictCounts(trees, {b"c1", b"c2", b"c3"})
    add_reference(store, b"root", trees.__getitem__)
    add_reference(store, b"root2", trees.__getitem__)
    assert store.values == {b"root": 1, b"sub": 2, b"root2": 1, b"c1": 2, b"c2": 1, b"c3": 1}
    freed = drop_reference(store, b"root", trees.__getitem__)
    assert sorted(freed) == [b"c1", b"root"]
    assert store.values[b"sub"] == 1  # still held by root2: not walked
    freed = drop_reference(store, b"root2", trees.__getitem__)
    assert sorted(freed) == [b"c2", b"c3", b"root2", b"sub"]
    assert set(store.values.values()) == {0}
