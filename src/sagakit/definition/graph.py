"""The dependency graph of a saga's steps, validated and precomputed once.

Each step depends on the steps named in its ``after`` when it declares one
(``after=()`` makes it a root), otherwise on every step of the previous item
of the saga's list (the stage before it), as in a plain sequence of stages.
The engine reads only this structure: which steps a step waits for
(``deps``), which wait for it (``dependents``) and everything downstream of
it (``descendants``, which must be undone before it is).

A valid graph has no unknown, self or duplicate dependency and no cycle; its
pivot, if any, is a cut: every other step is upstream (an ancestor) or
downstream (a descendant) of it, and no descendant has a compensation.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sagakit.errors import DefinitionError

if TYPE_CHECKING:
    from sagakit.definition.step import Step


@dataclass(frozen=True, slots=True)
class FailFast:
    """A ``Parallel(..., on_failure="fail_fast")`` group: when one of its
    ``steps`` fails for good, the others still running are cancelled after
    ``grace`` seconds."""

    steps: tuple[str, ...]
    grace: float


@dataclass(frozen=True, slots=True)
class Graph:
    """The steps of a saga as a directed acyclic graph (by step name)."""

    order: tuple[str, ...]
    """A topological order, as close to the definition order as it allows."""
    deps: Mapping[str, tuple[str, ...]]
    dependents: Mapping[str, tuple[str, ...]]
    descendants: Mapping[str, frozenset[str]]
    level: Mapping[str, int]
    """The longest path from a root: the display stage of the step."""
    roots: tuple[str, ...]
    fail_fast: Mapping[str, FailFast]
    """The fail-fast group of each step that is in one."""
    explicit: bool
    """Some step declares ``after``: the shape is not a plain list of stages."""
    linear: bool = False
    """A single chain: one root, and every step has at most one dependency
    and one dependent."""

    def layers(self, steps: Sequence[Step]) -> tuple[tuple[Step, ...], ...]:
        """``steps`` (in definition order) grouped by level: the stages a
        list of stages was written as, or a layering of a DAG for display."""
        out: list[list[Step]] = [[] for _ in range(max(self.level.values()) + 1)]
        for s in steps:
            out[self.level[s.name]].append(s)
        return tuple(tuple(group) for group in out)


def build(
    saga: str,
    items: Sequence[tuple[tuple[Step, ...], FailFast | None]],
) -> Graph:
    """The graph of a saga made of ``items`` (each a stage of steps and its
    fail-fast group, if it is one); ``DefinitionError`` naming what is wrong."""
    deps: dict[str, tuple[str, ...]] = {}
    fail_fast: dict[str, FailFast] = {}
    position: dict[str, int] = {}
    previous: tuple[str, ...] = ()
    explicit = False
    for group, fast in items:
        for s in group:
            position[s.name] = len(position)
            if s.after is None:
                deps[s.name] = previous
            else:
                explicit = True
                deps[s.name] = s.after
            if fast is not None:
                fail_fast[s.name] = fast
        previous = tuple(s.name for s in group)
    unknown = [
        f"{name!r} after {dep!r}"
        for name, names in deps.items()
        for dep in names
        if dep not in deps
    ]
    if unknown:
        raise DefinitionError(
            f"saga {saga!r}: unknown dependencies: {', '.join(unknown)}"
        )
    dependents: dict[str, list[str]] = {name: [] for name in deps}
    for name, names in deps.items():
        for dep in names:
            dependents[dep].append(name)
    order = _topological(saga, deps, dependents, position)
    level: dict[str, int] = {}
    for name in order:
        level[name] = 1 + max((level[d] for d in deps[name]), default=-1)
    descendants: dict[str, frozenset[str]] = {}
    for name in reversed(order):
        below: set[str] = set()
        for d in dependents[name]:
            below.add(d)
            below |= descendants[d]
        descendants[name] = frozenset(below)
    return Graph(
        order=order,
        deps=deps,
        dependents={k: tuple(v) for k, v in dependents.items()},
        descendants=descendants,
        level=level,
        roots=tuple(n for n in order if not deps[n]),
        fail_fast=fail_fast,
        explicit=explicit,
        linear=sum(not d for d in deps.values()) == 1
        and all(len(d) <= 1 for d in deps.values())
        and all(len(d) <= 1 for d in dependents.values()),
    )


def _topological(
    saga: str,
    deps: Mapping[str, tuple[str, ...]],
    dependents: Mapping[str, list[str]],
    position: Mapping[str, int],
) -> tuple[str, ...]:
    """Kahn's algorithm, taking the earliest defined ready step first."""
    waiting = {name: len(names) for name, names in deps.items()}
    ready = [(position[n], n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for d in dependents[name]:
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(ready, (position[d], d))
    if len(order) < len(deps):
        cycle = _cycle(deps, {n for n, count in waiting.items() if count})
        raise DefinitionError(
            f"saga {saga!r}: steps depend on each other in a cycle: "
            + " -> ".join(repr(n) for n in cycle)
        )
    return tuple(order)


def _cycle(deps: Mapping[str, tuple[str, ...]], stuck: set[str]) -> list[str]:
    """One cycle among ``stuck`` (steps Kahn's algorithm could not order),
    written in dependency order and closed (first name again at the end)."""
    # every stuck step waits for a stuck step: walk back until a name repeats
    name = min(stuck)
    seen: dict[str, int] = {}
    path: list[str] = []
    while name not in seen:
        seen[name] = len(path)
        path.append(name)
        name = next(d for d in deps[name] if d in stuck)
    loop = path[seen[name] :]
    loop.reverse()  # from "waits for" to "runs before"
    first = loop.index(min(loop))
    loop = loop[first:] + loop[:first]
    return [*loop, loop[0]]


def check_pivot(saga: str, graph: Graph, pivot: Step, steps: Sequence[Step]) -> None:
    """The pivot is a cut and nothing downstream of it has a compensation."""
    below = graph.descendants[pivot.name]
    unrelated = [
        s.name
        for s in steps
        if s.name != pivot.name
        and s.name not in below
        and pivot.name not in graph.descendants[s.name]
    ]
    if unrelated:
        raise DefinitionError(
            f"saga {saga!r}: the pivot {pivot.name!r} must be a cut of the graph, "
            f"but {', '.join(map(repr, unrelated))} run neither before nor after "
            "it (make the pivot wait for them, or them for the pivot)"
        )
    for s in steps:
        undone = s.compensate is not None and not s.rolls_back_child  # never run
        if s.name in below and (undone or s.compensate_on_failure):
            raise DefinitionError(
                f"saga {saga!r}: step {s.name!r} comes after the pivot "
                f"{pivot.name!r} and cannot have a compensation (steps after the "
                "pivot are retried, never compensated)"
            )
