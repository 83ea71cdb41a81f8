"""The orchestration DSL: ``Saga``, ``Step`` and ``Parallel``.

A definition is built once, validated as it is built, and never changes. It
holds callables but performs no I/O; the runtime calls them. ``Step`` and
its own checks are in :mod:`sagakit.definition.step` (imported from here as
before); this module puts steps together: parallel groups, the saga's graph,
pivot, locks, sub-sagas, version and fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from sagakit.definition import graph
from sagakit.definition.fingerprint import fingerprint
from sagakit.definition.graph import FailFast
from sagakit.definition.lock import check_saga_locks
from sagakit.definition.migration import ContextMap, Migration, migrations_of
from sagakit.definition.step import Step, check_name
from sagakit.definition.subsaga import check_cycles, children_of, family
from sagakit.definition.versions import check_version
from sagakit.errors import DefinitionError

__all__ = [
    "DictContext",
    "OnCompensationFailure",
    "OnFailure",
    "Parallel",
    "Saga",
    "Step",
]


class DictContext(BaseModel):
    """The context of a saga that declares none: any JSON-able fields."""

    model_config = ConfigDict(extra="allow")


C = TypeVar("C", bound=BaseModel)


OnFailure = Literal["wait_all", "fail_fast"]
OnCompensationFailure = Literal["stop", "continue"]


@dataclass(frozen=True, slots=True, init=False)
class Parallel:
    """Steps started together; the saga moves on when all of them succeeded.

    ``on_failure="wait_all"`` (the default) lets the other steps of the group
    run to their end when one fails for good; ``"fail_fast"`` cancels those
    still running, ``grace`` seconds after the failure (a step that finishes
    within the grace is recorded as usual). Cancelling reaches ``async``
    steps only: a plain function runs in a thread, which cannot be
    interrupted, and a remote participant cannot be recalled, so those are
    waited for. A cancelled step counts as failed (``Cancelled``, not
    retried): it is not compensated unless it is ``compensate_on_failure``.
    """

    steps: tuple[Step, ...]
    on_failure: OnFailure
    grace: float

    def __init__(
        self, *steps: Step, on_failure: OnFailure = "wait_all", grace: float = 0.0
    ) -> None:
        if not steps:
            raise DefinitionError("Parallel() needs at least one step")
        for s in steps:
            if not isinstance(s, Step):
                raise DefinitionError(f"Parallel() takes Step objects, got {s!r}")
            if s.pivot:
                raise DefinitionError(
                    f"step {s.name!r}: a pivot cannot run in a parallel group"
                )
        names = ", ".join(repr(s.name) for s in steps)
        if on_failure not in ("wait_all", "fail_fast"):
            raise DefinitionError(
                f"Parallel({names}): on_failure must be 'wait_all' or 'fail_fast', "
                f"got {on_failure!r}"
            )
        if (
            isinstance(grace, bool)
            or not isinstance(grace, (int, float))
            or not grace >= 0
            or grace == float("inf")
        ):
            raise DefinitionError(
                f"Parallel({names}): grace must be a number of seconds >= 0, "
                f"got {grace!r}"
            )
        if grace and on_failure != "fail_fast":
            raise DefinitionError(
                f"Parallel({names}): grace applies to on_failure='fail_fast' only"
            )
        object.__setattr__(self, "steps", tuple(steps))
        object.__setattr__(self, "on_failure", on_failure)
        object.__setattr__(self, "grace", float(grace))


class Saga(Generic[C]):
    """An orchestrated saga: stages of steps run in order, compensated in reverse.

    ``steps`` lists stages (a ``Step``, or a ``Parallel`` group of steps
    started together); a step that declares ``after`` depends on the steps it
    names instead of the previous stage, which makes the saga a graph: every
    step starts as soon as its dependencies succeeded, and on a failure the
    completed steps are compensated in reverse dependency order, independent
    branches (and the steps of a parallel group) concurrently.

    ``context`` is a pydantic model class; an instance of it is passed to every
    step and compensation and persisted after each step.

    ``on_compensation_failure`` says what a compensation that fails for good
    does to the rollback: ``"stop"`` (the default) starts no further
    compensation, lets those already running finish, and ends
    ``compensation_failed`` for an operator to ``resume``; ``"continue"``
    records the failure and still attempts every other compensation (those
    upstream of the failed one included), then ends ``compensation_failed``
    listing every compensation error.

    ``version`` (default 1) numbers this definition of ``name``: each instance
    records the version and the structural ``fingerprint`` it started with and
    finishes on that definition. Register a changed shape under a new version
    next to the old one until the old instances have drained, or declare in
    ``migrate_from`` how an instance of an older version becomes one of this
    version (see :class:`~sagakit.definition.migration.Migration`).

    ``stages`` groups the steps for display: the stages as written, or for a
    graph, each step at its longest distance from a root.

    ``children`` maps each sub-saga step to its child saga, and ``family``
    lists every saga below this one (children, their children...), each
    once; a saga that contains itself is refused.
    """

    __slots__ = (
        "_by_name",
        "children",
        "context",
        "family",
        "fingerprint",
        "graph",
        "items",
        "lock_steps",
        "migrate_from",
        "name",
        "on_compensation_failure",
        "pivot",
        "pivot_stage",
        "sends",
        "stages",
        "version",
    )

    def __init__(
        self,
        name: str,
        steps: Sequence[Step | Parallel],
        *,
        context: type[C] = DictContext,  # type: ignore[assignment]
        version: int = 1,
        migrate_from: Mapping[int, Migration | ContextMap] | None = None,
        on_compensation_failure: OnCompensationFailure = "stop",
    ) -> None:
        self.name = check_name("Saga", name)
        self.version = check_version(f"saga {name!r}", version)
        if not (isinstance(context, type) and issubclass(context, BaseModel)):
            raise DefinitionError(
                f"saga {name!r}: context must be a pydantic BaseModel class, "
                f"got {context!r}"
            )
        self.context: type[C] = context
        if on_compensation_failure not in ("stop", "continue"):
            raise DefinitionError(
                f"saga {name!r}: on_compensation_failure must be 'stop' or "
                f"'continue', got {on_compensation_failure!r}"
            )
        self.on_compensation_failure: OnCompensationFailure = on_compensation_failure
        if isinstance(steps, (Step, Parallel)) or not isinstance(steps, Sequence):
            raise DefinitionError(
                f"saga {name!r}: steps must be a list of Step/Parallel"
            )
        if not steps:
            raise DefinitionError(f"saga {name!r} is empty: it needs at least one step")
        self.items: tuple[Step | Parallel, ...] = tuple(steps)
        items: list[tuple[tuple[Step, ...], FailFast | None]] = []
        by_name: dict[str, Step] = {}
        pivot: Step | None = None
        for item in steps:
            fast: FailFast | None = None
            if isinstance(item, Step):
                group: tuple[Step, ...] = (item,)
            elif isinstance(item, Parallel):
                group = item.steps
                if item.on_failure == "fail_fast":
                    fast = FailFast(tuple(s.name for s in group), item.grace)
            else:
                raise DefinitionError(
                    f"saga {name!r}: steps must be Step or Parallel, got {item!r}"
                )
            for s in group:
                if s.name in by_name:
                    raise DefinitionError(
                        f"saga {name!r}: duplicate step name {s.name!r}"
                    )
                by_name[s.name] = s
                if s.pivot:
                    if pivot is not None:
                        raise DefinitionError(
                            f"saga {name!r}: two pivots, {pivot.name!r} and "
                            f"{s.name!r}; a saga has at most one"
                        )
                    pivot = s
            items.append((group, fast))
        self._by_name = by_name
        self.sends = any(
            s.is_remote or s.compensation_is_remote for s in by_name.values()
        )
        """Some step's action or compensation is a command to another
        service (``Remote``): without one, a decision sends nothing."""
        self.children: dict[str, Saga[Any]] = children_of(list(by_name.values()))
        check_cycles(name, self.children)
        self.family: tuple[Saga[Any], ...] = tuple(family(self.children))
        self.graph = graph.build(name, items)
        if pivot is not None:
            graph.check_pivot(name, self.graph, pivot, list(by_name.values()))
        self.pivot: str | None = None if pivot is None else pivot.name
        self.lock_steps: frozenset[str] = check_saga_locks(
            name,
            {s.name: s.lock_specs for s in by_name.values() if s.locks},
            self.graph.descendants,
            context,
        )
        self.stages: tuple[tuple[Step, ...], ...] = self.graph.layers(
            list(by_name.values())
        )
        self.pivot_stage = None if pivot is None else self.graph.level[pivot.name]
        self.fingerprint = fingerprint(
            self.stages,
            deps=self.graph.deps if self.graph.explicit else None,
            fail_fast=frozenset(self.graph.fail_fast),
            on_compensation_failure=on_compensation_failure,
        )
        self.migrate_from = migrations_of(
            name, version, migrate_from, frozenset(by_name)
        )

    def rebuilt(self, wrap: Callable[[Step], Step]) -> Saga[C]:
        """The same saga (shape, options, version) with each step ``wrap``-ped
        (which must keep its name and shape): for instrumenting a saga."""
        items: list[Step | Parallel] = [
            wrap(item)
            if isinstance(item, Step)
            else Parallel(
                *(wrap(s) for s in item.steps),
                on_failure=item.on_failure,
                grace=item.grace,
            )
            for item in self.items
        ]
        return Saga(
            self.name,
            items,
            context=self.context,
            version=self.version,
            on_compensation_failure=self.on_compensation_failure,
        )

    def step(self, name: str) -> Step:
        try:
            return self._by_name[name]
        except KeyError:
            raise DefinitionError(f"saga {self.name!r} has no step {name!r}") from None

    def has_step(self, name: str) -> bool:
        return name in self._by_name

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def __iter__(self) -> Iterator[Step]:
        return iter(self._by_name.values())

    def __repr__(self) -> str:
        shape = " -> ".join(
            "[" + " | ".join(s.name for s in g) + "]" if len(g) > 1 else g[0].name
            for g in self.stages
        )
        version = f" v{self.version}" if self.version != 1 else ""
        return f"Saga({self.name!r}{version}: {shape})"
