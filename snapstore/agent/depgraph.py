"""The agents' dependency graph: start levels, stop order, cycles, who is blocked by a failure.

Pure functions over ``{agent: [agents it depends on]}``; nothing here runs a process. Recovery
starts agents level by level (level 0 depends on nothing being recovered, level n only on
agents of lower levels, each agent at the lowest level it can be), stops them in the reverse
order (dependents first), and does not start the dependents of an agent that failed.
A dependency on an agent outside the chosen set is not waited for here: the caller decides
what an outside dependency means (recovery checks its health once).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

Graph = Mapping[str, Sequence[str]]


def find_cycle(graph: Graph) -> list[str] | None:
    """One dependency cycle as ``[a, b, ..., a]``, or None. Names that are not keys are leaves."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, ()):
            mark = state.get(dep)
            if mark == 1:
                return path[path.index(dep):] + [dep]
            if mark is None:
                found = visit(dep)
                if found is not None:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found is not None:
                return found
    return None


def start_levels(graph: Graph, chosen: Iterable[str]) -> list[list[str]]:
    """The chosen agents in start levels: each agent one level above its highest dependency
    among the chosen (dependencies outside ``chosen`` do not count). Names sorted in a level.
    Raises ``ValueError`` naming a cycle among the chosen."""
    members = set(chosen)
    sub = {name: [d for d in graph.get(name, ()) if d in members] for name in members}
    cycle = find_cycle(sub)
    if cycle is not None:
        raise ValueError("depends_on cycle: " + " -> ".join(cycle))
    level: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in level:
            level[name] = 1 + max((depth(d) for d in sub[name]), default=-1)
        return level[name]

    for name in members:
        depth(name)
    out: list[list[str]] = [[] for _ in range(1 + max(level.values(), default=-1))]
    for name, n in level.items():
        out[n].append(name)
    return [sorted(names) for names in out]


def stop_order(levels: Sequence[Sequence[str]]) -> list[list[str]]:
    """The levels reversed: dependents are stopped before what they depend on."""
    return [list(names) for names in reversed(levels)]


def dependents(graph: Graph, failed: Collection[str]) -> set[str]:
    """Every agent that depends, directly or through others, on one of ``failed`` (not ``failed``)."""
    out: set[str] = set()
    frontier = set(failed)
    while frontier:
        frontier = {name for name, deps in graph.items() if name not in out and set(deps) & frontier} - set(failed)
        out |= frontier
    return out
