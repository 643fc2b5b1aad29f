"""The backend protocol, checked the same way against every backend that implements it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapstore.storage.backend import Backend, LocalBackend


@pytest.fixture(params=["local"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: Backend
    if request.param == "local":
        made = LocalBackend(str(tmp_path / "repo"))
    else:  # pragma: no cover - every kind is listed in params
        raise AssertionError(request.param)
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

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [t for t in results if t is not None]
    assert len(winners) == 1 and len(results) == 8
    data, tag = backend.get_tagged("locks/gc.json") or (b"", "")
    assert tag == winners[0] and data.startswith(b"racer-")


def test_stats_of_a_bare_backend_count_nothing(backend: Backend) -> None:
    backend.put_bytes("x", b"abc")
    backend.get("x")
    assert backend.stats().fetched_bytes == 0 and backend.stats().requests == 0
