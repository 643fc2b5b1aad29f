"""The agents' dependency graph: start levels, stop order, cycles, blocked dependents."""

from __future__ import annotations

import graphlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapstore.agent.depgraph import dependents, find_cycle, start_levels, stop_order

SEED = {"Z": [], "Jay": ["Z"], "Rick": ["Z"], "Leroy": ["Jay", "Rick"]}


def test_the_seeds_order() -> None:
    levels = start_levels(SEED, SEED)
    assert levels == [["Z"], ["Jay", "Rick"], ["Leroy"]]
    assert stop_order(levels) == [["Leroy"], ["Jay", "Rick"], ["Z"]]


def test_outside_dependencies_do_not_count() -> None:
    assert start_levels(SEED, ["Jay", "Leroy"]) == [["Jay"], ["Leroy"]]
    assert start_levels(SEED, ["Leroy"]) == [["Leroy"]]
    assert start_levels(SEED, []) == []


def test_cycle_is_named() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": []}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    with pytest.raises(ValueError, match="depends_on cycle: "):
        start_levels(graph, graph)
    assert start_levels(graph, ["a", "b", "d"]) == [["b", "d"], ["a"]]  # the cycle needs c
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle(SEED) is None


def test_dependents_are_transitive() -> None:
    assert dependents(SEED, ["Z"]) == {"Jay", "Rick", "Leroy"}
    assert dependents(SEED, ["Jay"]) == {"Leroy"}
    assert dependents(SEED, ["Leroy"]) == set()


names = st.sampled_from([f"a{i}" for i in range(8)])
graphs = st.dictionaries(names, st.lists(names, max_size=4, unique=True), max_size=8)


@settings(max_examples=300, deadline=None)
@given(graphs, st.sets(names))
def test_levels_against_graphlib(graph: dict[str, list[str]], chosen: set[str]) -> None:
    chosen &= set(graph)
    sub = {n: [d for d in graph[n] if d in chosen] for n in chosen}
    try:
        list(graphlib.TopologicalSorter(sub).static_order())
    except graphlib.CycleError:
        with pytest.raises(ValueError):
            start_levels(graph, chosen)
        assert find_cycle(sub) is not None
        return
    assert find_cycle(sub) is None
    levels = start_levels(graph, chosen)
    where = {n: i for i, level in enumerate(levels) for n in level}
    assert sorted(where) == sorted(chosen)  # each chosen agent exactly once
    assert sum(len(level) for level in levels) == len(chosen)
    for n in chosen:
        # after every dependency, and as early as that allows
        assert all(where[d] < where[n] for d in sub[n])
        assert where[n] == 1 + max((where[d] for d in sub[n]), default=-1)
    assert all(levels), "no empty level"


@settings(max_examples=200, deadline=None)
@given(graphs, st.sets(names, max_size=3))
def test_dependents_are_exactly_those_reaching_a_failure(graph: dict[str, list[str]], failed: set[str]) -> None:
    blocked = dependents(graph, failed)
    assert not blocked & failed

    def reaches(n: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(d in failed or (d not in seen and reaches(d, seen | {n})) for d in graph.get(n, ()))

    assert blocked == {n for n in graph if n not in failed and reaches(n)}
