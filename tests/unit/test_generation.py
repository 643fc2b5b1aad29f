"""The change marker of a remote repository (snapstore.repo.generation): its parsing, the
conditional announcement, the skip rule and which writes count as changes."""

from __future__ import annotations

import pytest

from snapstore.repo.generation import MARKER, ChangeNoting, Generation, announce, may_skip_sync, read_marker
from snapstore.storage.memory import MemoryBackend


def test_announce_replaces_conditionally_and_says_when_it_was_alone() -> None:
    store = MemoryBackend()
    assert read_marker(store) is None
    first, alone = announce(store, None)  # the first marker: nothing was synced under one
    assert not alone
    seen = read_marker(store)
    assert seen is not None and seen.token == first
    second, alone = announce(store, seen)
    assert alone and second != first
    third, alone = announce(store, seen)  # someone announced since ``seen``: a fresh token anyway
    assert not alone and third not in (first, second)
    now = read_marker(store)
    assert now is not None and now.token == third


@pytest.mark.parametrize("raw", [b"", b"\xff" * 32, b"0" * 31, b"g" * 32, b"0" * 33, b'{"token": 1}'])
def test_a_marker_that_does_not_parse_means_list(raw: bytes) -> None:
    store = MemoryBackend()
    store.put_bytes(MARKER, raw)
    assert read_marker(store) is None
    token, _alone = announce(store, None)  # and the next writer replaces it
    assert (read_marker(store) or Generation("", "")).token == token


def test_the_skip_rule() -> None:
    now = Generation("ab" * 16, "tag")
    assert may_skip_sync(stored="ab" * 16, current=now, gc_lease=False, in_flight=False)
    assert not may_skip_sync(stored="cd" * 16, current=now, gc_lease=False, in_flight=False)
    assert not may_skip_sync(stored=None, current=now, gc_lease=False, in_flight=False)
    assert not may_skip_sync(stored="ab" * 16, current=None, gc_lease=False, in_flight=False)
    assert not may_skip_sync(stored="ab" * 16, current=now, gc_lease=True, in_flight=False)
    assert not may_skip_sync(stored="ab" * 16, current=now, gc_lease=False, in_flight=True)


def test_only_changes_outside_the_leases_are_noted() -> None:
    store = ChangeNoting(MemoryBackend())
    store.put_bytes("locks/read-h-1.json", b"{}")
    store.delete("locks/read-h-1.json")
    announce(store, None)
    assert not store.changed
    store.put_bytes("snapshots/x.json", b"{}")
    assert store.changed
    other = ChangeNoting(MemoryBackend())
    other.put_bytes("packs/ab/x.pack", b"x")
    other.changed = False
    other.delete("packs/ab/x.pack")
    assert other.changed
