"""The backend protocol, checked the same way against every backend and wrapper stack, and the
wrappers' own behaviour (retries, counts, injected faults)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapstore.errors import RemoteError, TransientError
from snapstore.storage.backend import Backend, LocalBackend
from snapstore.storage.faulty import Fault, FaultyBackend
from snapstore.storage.locations import parse_location
from snapstore.storage.memory import MemoryBackend, serve
from snapstore.storage.metered import MeteredBackend
from snapstore.storage.retrying import RetryingBackend
from tests.conftest import run_threads


def _no_sleep(_seconds: float) -> None:
    pass


@pytest.fixture(params=["local", "memory", "local-wrapped", "memory-wrapped"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: Backend = LocalBackend(str(tmp_path / "repo")) if request.param.startswith("local") else MemoryBackend()
    if request.param.endswith("wrapped"):
        # every wrapper at once, with a fault that never matches: they must be transparent
        made = MeteredBackend(RetryingBackend(FaultyBackend(made, [Fault(name="never/*", times=-1)]),
                                              sleep=_no_sleep))
    try:
        yield made
    finally:
        made.close()


def _local_file(backend: Backend, data: bytes) -> str:
    path = os.path.join(backend.local_tmp_dir(), f"upload-{len(data)}-{threading.get_ident()}")
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def test_put_get_and_not_found(backend: Backend) -> None:
    assert backend.is_empty()
    backend.put_bytes("snapshots/a.json", b"{}")
    path = _local_file(backend, b"pack-bytes" * 10)
    backend.put_file("packs/ab/ab01.pack", path)
    assert not os.path.exists(path)  # consumed
    assert not backend.is_empty()
    assert backend.get("snapshots/a.json") == b"{}"
    assert backend.get_range("packs/ab/ab01.pack", 4, 6) == b"-bytes"
    assert backend.get_range("packs/ab/ab01.pack", 95, 10) == b"bytes"  # short only at the end
    assert backend.size("packs/ab/ab01.pack") == 100
    assert backend.mtime("snapshots/a.json") is not None
    assert backend.size("nope") is None and backend.mtime("nope") is None
    assert backend.get_tagged("nope") is None
    with pytest.raises(FileNotFoundError):
        backend.get("nope")
    with pytest.raises(FileNotFoundError):
        backend.get_range("packs/ab/nope.pack", 0, 4)
    with pytest.raises(FileNotFoundError):
        backend.rename("nope", "other")
    backend.delete("nope")  # a missing name is not an error
    backend.put_bytes("snapshots/a.json", b"[1]")  # replaces
    assert backend.get("snapshots/a.json") == b"[1]"
    backend.rename("snapshots/a.json", "damaged/snapshots/a.json")
    assert backend.size("snapshots/a.json") is None
    assert backend.get("damaged/snapshots/a.json") == b"[1]"
    backend.delete("damaged/snapshots/a.json")
    assert backend.size("damaged/snapshots/a.json") is None


def test_listing_is_sorted_by_name(backend: Backend) -> None:
    names = ["packs/ab/ab.x", "packs/ab/ab01.pack", "packs/ab.txt", "packs/a/zz", "packs/b0/00", "packs/ab-/1"]
    for i, name in enumerate(names):
        backend.put_bytes(name, b"x" * i)
    backend.put_bytes("packsy/other", b"not under packs/")
    listed = list(backend.list_stat("packs"))
    assert [n for n, _s, _m in listed] == sorted(names)
    assert dict(backend.list("packs")) == {name: i for i, name in enumerate(names)}
    assert list(backend.list("missing")) == []


def test_conditional_writes(backend: Backend) -> None:
    first = backend.create_exclusive("locks/gc.json", b"one")
    assert first is not None
    assert backend.create_exclusive("locks/gc.json", b"two") is None
    assert backend.get("locks/gc.json") == b"one"
    got = backend.get_tagged("locks/gc.json")
    assert got == (b"one", first)
    second = backend.replace_if("locks/gc.json", b"two", first)
    assert second is not None and second != first
    assert backend.replace_if("locks/gc.json", b"three", first) is None  # stale tag
    assert backend.get("locks/gc.json") == b"two"
    backend.delete_if("locks/gc.json", first)  # stale: nothing happens
    assert backend.get("locks/gc.json") == b"two"
    backend.delete_if("locks/gc.json", second)
    assert backend.get_tagged("locks/gc.json") is None
    assert backend.replace_if("locks/gc.json", b"four", second) is None  # gone
    assert backend.size("locks/gc.json") is None


def test_exclusive_create_has_one_winner(backend: Backend) -> None:
    results: list[str | None] = []
    lock = threading.Lock()

    def racer(i: int) -> None:
        tag = backend.create_exclusive("locks/gc.json", f"racer-{i}".encode())
        with lock:
            results.append(tag)

    run_threads(racer, 8)
    winners = [t for t in results if t is not None]
    assert len(winners) == 1 and len(results) == 8
    data, tag = backend.get_tagged("locks/gc.json") or (b"", "")
    assert tag == winners[0] and data.startswith(b"racer-")


def test_stats_of_a_bare_backend_count_nothing() -> None:
    backend = MemoryBackend()
    backend.put_bytes("x", b"abc")
    backend.get("x")
    assert backend.stats().fetched_bytes == 0 and backend.stats().requests == 0


# -- the wrappers ---------------------------------------------------------------------------------
def test_retries_get_past_transient_failures_and_count_them() -> None:
    waits: list[float] = []
    faulty = FaultyBackend(MemoryBackend(), fail_first=3)
    backend = MeteredBackend(RetryingBackend(faulty, attempts=5, sleep=waits.append))
    backend.put_bytes("snapshots/a.json", b"{}")  # three failures, then it goes through
    assert backend.get("snapshots/a.json") == b"{}"
    stats = backend.stats()
    assert (stats.requests, stats.retries, stats.injected_failures) == (2, 3, 3)
    assert stats.sent_bytes == 2 and stats.fetched_bytes == 2
    assert len(waits) == 3 and all(0 <= w <= 20 for w in waits)


def test_retries_give_up_with_the_last_error() -> None:
    faulty = FaultyBackend(MemoryBackend(), fail_first=50)
    backend = RetryingBackend(faulty, attempts=2, sleep=_no_sleep)
    with pytest.raises(RemoteError, match=r"ServiceUnavailable.*gave up after 2 attempts"):
        backend.put_bytes("x", b"1")
    assert faulty.stats().injected_failures == 2


def test_permanent_errors_are_not_retried() -> None:
    store = MemoryBackend()
    faulty = FaultyBackend(store, [Fault(op="get", error=lambda op, name: RemoteError("refused"))])
    backend = RetryingBackend(faulty, sleep=_no_sleep)
    store.put_bytes("x", b"1")
    with pytest.raises(RemoteError, match="refused"):
        backend.get("x")
    assert backend.stats().retries == 0
    with pytest.raises(FileNotFoundError):  # not found is an answer, not a failure
        backend.get("missing")
    assert backend.get("x") == b"1"


def test_a_listing_broken_off_resumes_after_the_last_name() -> None:
    store = MemoryBackend()
    names = [f"packs/{i:02x}/{i:02x}.pack" for i in range(10)]
    for name in names:
        store.put_bytes(name, b"p")
    faulty = FaultyBackend(store, [Fault(op="list_stat", action="lose_reply", times=2)])
    backend = RetryingBackend(faulty, sleep=_no_sleep)
    assert [n for n, _s in backend.list("packs")] == names  # each name once, in order
    assert backend.stats().retries == 2


def test_a_lost_answer_to_a_conditional_create_is_not_taken_for_a_rival() -> None:
    store = MemoryBackend()
    faulty = FaultyBackend(store, [Fault(op="create_exclusive", action="lose_reply")])
    backend = RetryingBackend(faulty, sleep=_no_sleep)
    # the create happened, its answer was lost; the retry finds the name taken
    assert backend.create_exclusive("locks/gc.json", b"mine") is None
    assert store.get("locks/gc.json") == b"mine"


def test_corrupt_writes_and_reads_flip_one_byte(tmp_path: Path) -> None:
    store = LocalBackend(str(tmp_path / "repo"))
    faulty = FaultyBackend(store, [Fault(op="put_file", name="packs/*", action="corrupt"),
                                   Fault(op="get_range", action="corrupt")])
    data = bytes(range(200))
    faulty.put_file("packs/aa/aa.pack", _local_file(faulty, data))
    stored = store.get("packs/aa/aa.pack")
    assert len(stored) == len(data) and sum(a != b for a, b in zip(stored, data, strict=True)) == 1
    faulty.put_file("packs/aa/bb.pack", _local_file(faulty, data))  # the fault is spent
    assert store.get("packs/aa/bb.pack") == data
    assert faulty.get_range("packs/aa/bb.pack", 0, 10) != data[:10]
    assert faulty.get_range("packs/aa/bb.pack", 0, 10) == data[:10]
    assert faulty.stats().injected_failures == 2


def test_hooks_run_at_the_exact_operation() -> None:
    seen: list[tuple[str, str, bool]] = []
    store = MemoryBackend()

    def before(op: str, name: str) -> None:
        seen.append((op, name, store.size(name) is not None))

    def after(op: str, name: str) -> None:
        seen.append((op, name, store.size(name) is not None))

    faulty = FaultyBackend(store, [Fault(op="put_bytes", name="snapshots/*", action="call", hook=before),
                                   Fault(op="put_bytes", name="snapshots/*", action="call_after", hook=after)])
    faulty.put_bytes("pins.json", b"[]")
    faulty.put_bytes("snapshots/a.json", b"{}")
    faulty.put_bytes("snapshots/b.json", b"{}")
    assert seen == [("put_bytes", "snapshots/a.json", False), ("put_bytes", "snapshots/b.json", True)]
    assert faulty.stats().injected_failures == 0  # hooks are not failures


def test_metered_counts_payload_bytes_and_reports_at_close(tmp_path: Path) -> None:
    report = tmp_path / "stats.jsonl"
    backend = MeteredBackend(MemoryBackend(), report_path=str(report))
    backend.put_bytes("a", b"12345")
    backend.put_file("b", _local_file(backend, b"x" * 100))
    assert backend.create_exclusive("a", b"zz") is None  # not written: not sent
    backend.get_range("b", 10, 20)
    backend.get_tagged("a")
    list(backend.list("b"))
    stats = backend.stats()
    assert (stats.requests, stats.sent_bytes, stats.fetched_bytes) == (6, 105, 25)
    backend.close()
    backend.close()
    (line,) = report.read_text().splitlines()
    assert '"sent_bytes": 105' in line and '"fetched_bytes": 25' in line


# -- the memory backend as a location -----------------------------------------------------------
def test_mem_locations_exist_only_while_served() -> None:
    with pytest.raises(Exception, match="unsupported repository URL"):
        parse_location("mem://scratch")
    store = MemoryBackend()
    with serve("scratch", store) as url:
        location = parse_location(url)
        assert location.remote and location.url == "mem://scratch"
    with pytest.raises(Exception, match="unsupported repository URL"):
        parse_location("mem://scratch")


def test_transient_error_is_a_remote_error() -> None:
    assert issubclass(TransientError, RemoteError)
