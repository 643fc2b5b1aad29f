"""Leases on a shared repository, in process against the memory backend: one gc at a time,
expiry and takeover, clock skew within the documented bound, and what a holder sees when it
has lost its lease."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from snapstore.errors import RemoteError, RepositoryLocked
from snapstore.storage.backend import Backend
from snapstore.storage.faulty import Fault, FaultyBackend
from snapstore.storage.lease import GC_LEASE, SKEW_S, Lease, LeaseInfo, read_gc_lease, read_leases
from snapstore.storage.memory import MemoryBackend

TTL = 300.0
T0 = 1_800_000_000.0


class Clock:
    """A host's wall clock: real time plus ``skew``, where real time is set by the test."""

    def __init__(self, world: list[float], skew: float = 0.0) -> None:
        self.world = world
        self.skew = skew

    def __call__(self) -> float:
        return self.world[0] + self.skew


@pytest.fixture
def world() -> list[float]:
    return [T0]


@pytest.fixture
def store() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def leases() -> Iterator[list[Lease]]:
    made: list[Lease] = []
    yield made
    for lease in made:
        lease.release()


def _lease(made: list[Lease], backend: Backend, kind: str, host: str, clock: Clock,
           monkeypatch: pytest.MonkeyPatch) -> Lease:
    monkeypatch.setenv("SNAP_HOSTNAME", host)
    lease = Lease(backend, kind, f"snap {kind} on {host}", ttl=TTL, clock=clock)
    made.append(lease)
    return lease


def test_one_gc_at_a_time(store: MemoryBackend, world: list[float], leases: list[Lease],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    alpha = _lease(leases, store, "gc", "alpha", Clock(world), monkeypatch)
    alpha.acquire()
    beta = _lease(leases, store, "gc", "beta", Clock(world), monkeypatch)
    with pytest.raises(RepositoryLocked, match=r"snap gc on alpha \(pid \d+ on alpha\)"):
        beta.acquire()
    alpha.release()
    assert store.size(GC_LEASE) is None
    beta.acquire()
    holder = read_gc_lease(store)
    assert holder is not None and holder.host == "beta" and holder.owner == beta.owner


def test_a_dead_gc_lease_is_taken_over_and_its_holder_notices(store: MemoryBackend, world: list[float],
                                                              leases: list[Lease],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    alpha = _lease(leases, store, "gc", "alpha", Clock(world), monkeypatch)
    alpha.acquire()
    beta = _lease(leases, store, "gc", "beta", Clock(world), monkeypatch)
    world[0] = T0 + TTL + SKEW_S - 1  # alpha stopped renewing, but it is not dead yet
    with pytest.raises(RepositoryLocked):
        beta.acquire()
    world[0] = T0 + TTL + SKEW_S + 1
    beta.acquire()  # a conditional replace over the dead lease
    holder = read_gc_lease(store)
    assert holder is not None and holder.owner == beta.owner
    with pytest.raises(RemoteError, match="another process took over the gc lease"):
        alpha.update(deleting=["packs/aa/aa.pack"])  # its renewal fails: it stops before deleting
    alpha.release()  # must not delete beta's lease
    holder = read_gc_lease(store)
    assert holder is not None and holder.owner == beta.owner


def test_a_holder_that_cannot_renew_stops_by_itself(store: MemoryBackend, world: list[float], leases: list[Lease],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    alpha = _lease(leases, store, "take", "alpha", Clock(world), monkeypatch)
    alpha.acquire()
    world[0] = T0 + TTL / 2
    alpha.check()
    world[0] = T0 + TTL + 1  # not renewed for a whole ttl: others may take it for dead
    with pytest.raises(RemoteError, match="lease lapsed"):
        alpha.check()


@pytest.mark.parametrize("skew", [-(SKEW_S - 5), SKEW_S - 5])
def test_clock_skew_within_the_bound_never_kills_a_live_lease(store: MemoryBackend, world: list[float],
                                                              leases: list[Lease], skew: float,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # alpha's clock is off by up to SKEW_S; as long as alpha itself trusts its lease (not
    # renewed for less than a ttl, on its own clock), beta must see it alive
    alpha = _lease(leases, store, "gc", "alpha", Clock(world, skew), monkeypatch)
    alpha.acquire()
    beta = _lease(leases, store, "gc", "beta", Clock(world), monkeypatch)
    world[0] = T0 + TTL
    alpha.check()  # alpha: exactly one ttl since its last renewal, still trusted
    with pytest.raises(RepositoryLocked):
        beta.acquire()
    take = _lease(leases, store, "take", "beta", Clock(world), monkeypatch)
    assert [info.host for info in take.others()] == ["alpha"]


def test_clock_skew_beyond_the_bound_is_caught_at_the_next_renewal(store: MemoryBackend, world: list[float],
                                                                  leases: list[Lease],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    skew = -(SKEW_S + 20)  # more than the documented bound: beta takes alpha for dead too early
    alpha = _lease(leases, store, "gc", "alpha", Clock(world, skew), monkeypatch)
    alpha.acquire()
    beta = _lease(leases, store, "gc", "beta", Clock(world), monkeypatch)
    world[0] = T0 + TTL - 5
    alpha.check()  # alpha still trusts its lease...
    beta.acquire()  # ...but beta took it over
    with pytest.raises(RemoteError, match="took over"):
        alpha.update(deleting=["packs/aa/aa.pack"])  # so alpha deletes nothing


def test_others_lists_live_leases_of_other_processes_only(store: MemoryBackend, world: list[float],
                                                         leases: list[Lease],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    gc = _lease(leases, store, "gc", "alpha", Clock(world), monkeypatch)
    gc.acquire()
    reader = _lease(leases, store, "read", "beta", Clock(world), monkeypatch)
    reader.acquire()
    writer = _lease(leases, store, "take", "gamma", Clock(world), monkeypatch)
    writer.acquire()
    stale = {"kind": "take", "owner": "old", "host": "delta", "pid": 1, "command": "snap take",
             "started": T0 - 9000, "expires": T0 - 8000, "deleting": []}
    store.put_bytes("locks/take-delta-1.json", json.dumps(stale).encode())
    store.put_bytes("locks/garbage.json", b"not json")
    assert sorted(i.host for i in gc.others()) == ["beta", "gamma"]
    assert sorted(i.host for i in read_leases(store)) == ["alpha", "beta", "delta", "gamma"]
    reader.release()
    writer.release()
    assert gc.others() == []


def test_a_lease_of_a_process_gone_from_this_host_is_dead_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    monkeypatch.setenv("SNAP_HOSTNAME", "alpha")
    info = LeaseInfo("locks/take-alpha-x.json", "take", "o", "alpha", child.pid, "snap take", T0, T0 + TTL)
    assert not info.alive(T0)
    elsewhere = LeaseInfo("locks/take-beta-x.json", "take", "o", "beta", child.pid, "snap take", T0, T0 + TTL)
    assert elsewhere.alive(T0)  # another host's pids mean nothing here


def test_a_lost_answer_to_the_gc_lease_create_is_still_ours(world: list[float], leases: list[Lease],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from snapstore.storage.retrying import RetryingBackend

    store = MemoryBackend()
    faulty = FaultyBackend(store, [Fault(op="create_exclusive", action="lose_reply")])
    backend = RetryingBackend(faulty, sleep=lambda _s: None)
    alpha = _lease(leases, backend, "gc", "alpha", Clock(world), monkeypatch)
    alpha.acquire()  # the retry finds the lease taken, by itself
    holder = read_gc_lease(store)
    assert holder is not None and holder.owner == alpha.owner
    alpha.release()
    assert store.size(GC_LEASE) is None
