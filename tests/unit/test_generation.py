"""The change marker of a remote repository (snapstore.repo.generation): its parsing, the
conditional announcement and its chain, the skip rule and which writes count as changes."""

from __future__ import annotations

import pytest

from snapstore.repo.generation import (
    MARKER,
    ChangeNoting,
    ChangeSet,
    Generation,
    announce,
    change_name,
    may_skip_sync,
    read_changes,
    read_marker,
)
from snapstore.storage.memory import MemoryBackend


def test_announcements_chain_and_a_host_behind_reads_them() -> None:
    store = MemoryBackend()
    assert read_marker(store) is None
    first, replaced = announce(store)  # the first marker: the chain starts at 0
    assert replaced is None and first.seq == 0
    seen = read_marker(store)
    assert seen is not None and seen.token == first.token and seen.seq == 0
    second, replaced = announce(store, ChangeSet(records={"r1"}, packs={"packs/ab/ab.pack": 10}))
    assert replaced is not None and replaced.token == first.token and second.seq == 1
    third, _ = announce(store, ChangeSet(forgotten={"r1"}))
    now = read_marker(store)
    assert now is not None and (now.token, now.seq) == (third.token, 2)
    changes = read_changes(store, seen.stored, now)
    assert changes is not None and [c.token for c in changes] == [second.token, third.token]
    assert changes[0].records == {"r1"} and changes[0].packs == (("packs/ab/ab.pack", 10),)
    assert changes[1].forgotten == {"r1"}
    assert read_changes(store, now.stored, now) is None  # not behind: nothing to read
    # a broken chain, a missing announcement, one that cannot be written as a change: list
    good = store.get(change_name(2))
    store.put_bytes(change_name(2), ChangeSet(records={"r9"}).to_json(third.token, "ef" * 16))  # another chain's
    assert read_changes(store, seen.stored, now) is None
    store.put_bytes(change_name(2), ChangeSet().to_json("ef" * 16, second.token))  # leads elsewhere
    assert read_changes(store, seen.stored, now) is None
    store.put_bytes(change_name(2), good)
    assert read_changes(store, seen.stored, now) is not None
    store.put_bytes(change_name(2), b"{}")
    assert read_changes(store, seen.stored, now) is None
    store.delete(change_name(2))
    assert read_changes(store, seen.stored, now) is None
    announce(store, ChangeSet(whole=True))  # a gc: no announcement written, the chain is cut
    assert read_changes(store, now.stored, read_marker(store)) is None
    assert read_changes(store, first.token, read_marker(store)) is None  # a token without a number


@pytest.mark.parametrize("raw", [b"", b"\xff" * 32, b"0" * 31, b"g" * 32, b"0" * 33, b'{"token": 1}',
                                 b"0" * 32 + b" x", b"0" * 32 + b" 1 2"])
def test_a_marker_that_does_not_parse_means_list(raw: bytes) -> None:
    store = MemoryBackend()
    store.put_bytes(MARKER, raw)
    assert read_marker(store) is None
    new, replaced = announce(store)  # and the next writer replaces it
    assert replaced is None and (read_marker(store) or Generation("", "")).token == new.token


def test_the_skip_rule() -> None:
    now = Generation("ab" * 16, "tag", 3)
    assert may_skip_sync(stored="ab" * 16 + " 3", current=now, gc_lease=False, in_flight=False)
    assert may_skip_sync(stored="ab" * 16, current=now, gc_lease=False, in_flight=False)
    assert not may_skip_sync(stored="cd" * 16, current=now, gc_lease=False, in_flight=False)
    assert not may_skip_sync(stored=None, current=now, gc_lease=False, in_flight=False)
    assert not may_skip_sync(stored="ab" * 16, current=None, gc_lease=False, in_flight=False)
    assert not may_skip_sync(stored="ab" * 16, current=now, gc_lease=True, in_flight=False)
    assert not may_skip_sync(stored="ab" * 16, current=now, gc_lease=False, in_flight=True)


def test_what_a_process_changed_is_noted() -> None:
    store = ChangeNoting(MemoryBackend())
    store.put_bytes("locks/read-h-1.json", b"{}")
    store.delete("locks/read-h-1.json")
    announce(store)
    assert not store.changed
    store.put_bytes("packs/ab/ab12.pack", b"x" * 7)
    store.put_bytes("snapshots/s1.json", b"{}")
    store.put_bytes("pins.json", b"[]")
    store.delete("snapshots/s0.json")
    assert store.changed and not store.changes.whole
    assert store.changes.packs == {"packs/ab/ab12.pack": 7}
    assert store.changes.records == {"s1"} and store.changes.forgotten == {"s0"}
    store.delete("packs/ab/ab12.pack")  # a pack deleted: hosts behind must list
    assert store.changes.whole
