"""The orchestration DSL: ``Saga``, ``Step`` and ``Parallel``.

A definition is built once, validated as it is built, and never changes. It
holds callables but performs no I/O; the runtime calls them.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict

from sagakit.definition import graph
from sagakit.definition.fingerprint import fingerprint
from sagakit.definition.graph import FailFast
from sagakit.definition.lock import Lock, check_saga_locks, step_locks
from sagakit.definition.migration import ContextMap, Migration, migrations_of
from sagakit.definition.remote import (
    DEFAULT_REPLY_TIMEOUT,
    Remote,
    check_step_remotes,
)
from sagakit.definition.retry import COMPENSATION_RETRY, NO_RETRY, RetryPolicy
from sagakit.definition.signature import UNKNOWN, CallShape, checked_shape
from sagakit.definition.subsaga import (
    SubSaga,
    check_cycles,
    check_step,
    children_of,
    family,
)
from sagakit.definition.versions import check_version
from sagakit.errors import DefinitionError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")


class DictContext(BaseModel):
    """The context of a saga that declares none: any JSON-able fields."""

    model_config = ConfigDict(extra="allow")


C = TypeVar("C", bound=BaseModel)


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DefinitionError(
            f"{kind} name {name!r} is invalid: use 1-100 letters, digits, "
            "'_', '.', '-', "
            "starting with a letter or '_'"
        )
    return name


@dataclass(frozen=True, slots=True)
class Step:
    """One local step: an action and, optionally, the compensation that undoes it.

    ``action(ctx)`` may be a function or a coroutine function; its return value
    (JSON-able) is recorded as the step result. ``compensate(ctx)`` or
    ``compensate(ctx, result)`` undoes a completed action. With
    ``output=Model`` the action's return value must validate as ``Model`` (a
    mismatch fails the attempt, never retried); its JSON form is recorded.

    Any action, compensation or ``Remote`` payload builder that declares a
    parameter named ``results`` gets, by keyword, a
    :class:`~sagakit.engine.results.Results`: the results of the steps that
    completed before the call, e.g. ``results.get("reserve", Reserved)``.

    ``pivot=True`` marks the point of no return: once the pivot succeeds, later
    failures are not compensated; later steps must be retriable and have no
    compensation. ``compensate_on_failure=True`` runs this step's own
    compensation when the step itself fails (use it when a failed attempt can
    leave partial effects, such as a timed-out call that may have landed).

    Plain (non-async) functions run in a worker thread, so a blocking call
    cannot stall the other sagas. ``blocking=False`` calls them on the event
    loop instead, which saves the thread hop (about 0.1 ms per call): for
    quick functions that never wait on I/O. Such a function cannot be
    interrupted, so it cannot have a ``timeout``.

    ``after`` names the steps this one waits for, making the saga a graph
    (DAG): the step starts as soon as all of them succeeded, and is
    compensated only once everything downstream of it has been. ``after=()``
    makes it a root, started with the saga. Without ``after`` a step waits
    for every step of the previous item of the saga's list, as in a plain
    sequence of stages.

    A :class:`~sagakit.definition.subsaga.SubSaga` action runs another saga
    as a child instance; the step's compensation is then the child's
    rollback (see :mod:`sagakit.definition.subsaga`).

    ``locks`` lists the business keys the saga holds from the step's start
    (key templates such as ``"seat:{ctx.flight}:{ctx.seat}"``, or
    :class:`~sagakit.definition.lock.Lock` for a mode, a timeout or an
    earlier release): see :mod:`sagakit.definition.lock`.
    """

    name: str
    action: Callable[..., Any] | Remote | SubSaga[Any]
    compensate: Callable[..., Any] | Remote | SubSaga[Any] | None = None
    retry: RetryPolicy = NO_RETRY
    compensation_retry: RetryPolicy = COMPENSATION_RETRY
    timeout: float | None = None
    compensation_timeout: float | None = None
    pivot: bool = False
    compensate_on_failure: bool = False
    blocking: bool = True
    compensation_takes_result: bool = field(default=False, init=False, compare=False)
    output: type[BaseModel] | None = None
    action_wants_results: bool = field(default=False, init=False, compare=False)
    """The action (or its payload builder) declares a ``results`` parameter."""
    compensation_wants_results: bool = field(default=False, init=False, compare=False)
    """The compensation (or its payload builder) declares ``results``."""
    after: tuple[str, ...] | None = None
    locks: Sequence[str | Lock] = ()
    action_is_coroutine: bool = field(
        default=False, init=False, compare=False, repr=False
    )
    """The action is a coroutine function (told once, not at every call)."""
    compensation_is_coroutine: bool = field(
        default=False, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        _check_name("Step", self.name)
        object.__setattr__(self, "locks", step_locks(self.name, self.locks))
        self._check_after()
        self._check_calls()
        check_step_remotes(
            self.name, self.action, self.compensate, self.compensation_timeout
        )
        if isinstance(self.action, Remote) and self.action.on_timeout is not None:
            self._payload_shape(self.action.on_timeout, "on_timeout", (1,))
        for attr in ("timeout", "compensation_timeout"):
            value = getattr(self, attr)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not value > 0
            ):
                raise DefinitionError(
                    f"step {self.name!r}: {attr} must be > 0, got {value}"
                )
        if not self.blocking:
            for attr, fn in (
                ("timeout", self.action),
                ("compensation_timeout", self.compensate),
            ):
                plain = callable(fn) and not isinstance(fn, Remote)
                plain = plain and not inspect.iscoroutinefunction(fn)
                if plain and getattr(self, attr) is not None:
                    raise DefinitionError(
                        f"step {self.name!r}: blocking=False runs a plain "
                        f"function on the event loop, where {attr} cannot "
                        "interrupt it; make it async or drop the timeout"
                    )
        if not isinstance(self.retry, RetryPolicy) or not isinstance(
            self.compensation_retry, RetryPolicy
        ):
            raise DefinitionError(
                f"step {self.name!r}: retry policies must be RetryPolicy"
            )
        if self.pivot and self.compensate is not None:
            raise DefinitionError(
                f"step {self.name!r}: a pivot step is the point of no return "
                "and cannot "
                "have a compensation"
            )
        if self.compensate_on_failure and self.compensate is None:
            raise DefinitionError(
                f"step {self.name!r}: compensate_on_failure=True needs a compensation"
            )
        self._check_output()

    def _check_after(self) -> None:
        after: object = self.after
        if after is None:
            return
        if isinstance(after, str) or not isinstance(after, Sequence):
            raise DefinitionError(
                f"step {self.name!r}: after must be a tuple of step names, "
                f"got {after!r}"
            )
        names = tuple(after)
        for dep in names:
            if not isinstance(dep, str):
                raise DefinitionError(
                    f"step {self.name!r}: after must name steps, got {dep!r}"
                )
        if self.name in names:
            raise DefinitionError(f"step {self.name!r} cannot run after itself")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise DefinitionError(
                f"step {self.name!r}: after names {', '.join(map(repr, twice))} "
                "more than once"
            )
        object.__setattr__(self, "after", names)

    def _check_output(self) -> None:
        if self.output is None:
            return
        if not (isinstance(self.output, type) and issubclass(self.output, BaseModel)):
            raise DefinitionError(
                f"step {self.name!r}: output must be a pydantic model class, "
                f"got {self.output!r}"
            )
        if isinstance(self.action, Remote):
            raise DefinitionError(
                f"step {self.name!r}: the output of a remote step is its reply; "
                f"declare it as Remote({self.action.command!r}, reply=...)"
            )

    def _check_calls(self) -> None:
        """Check that the runtime can call the action, the compensation and
        their payload builders, and note which ones take what."""
        action = self.action
        if isinstance(action, SubSaga):
            check_step(self)  # sets the child's rollback as the compensation
            shape = UNKNOWN
        elif isinstance(action, Remote):
            shape = self._payload_shape(action, "action", (1,))
        elif not callable(action):
            raise DefinitionError(f"step {self.name!r}: action must be callable")
        else:
            rule = "action must take exactly one positional argument (the saga context)"
            shape = checked_shape(self.name, action, (1,), rule)
        object.__setattr__(self, "action_wants_results", shape.results)
        object.__setattr__(
            self, "action_is_coroutine", inspect.iscoroutinefunction(action)
        )
        compensate = self.compensate
        object.__setattr__(
            self, "compensation_is_coroutine", inspect.iscoroutinefunction(compensate)
        )
        if compensate is None or isinstance(compensate, SubSaga):
            return
        if isinstance(compensate, Remote):
            shape = self._payload_shape(compensate, "compensation", (2, 1))
        elif not callable(compensate):
            raise DefinitionError(f"step {self.name!r}: compensate must be callable")
        else:
            rule = "compensate must take (ctx) or (ctx, result)"
            shape = checked_shape(self.name, compensate, (2, 1), rule)
        takes_result = shape.known and shape.accepts(2)
        object.__setattr__(self, "compensation_takes_result", takes_result)
        object.__setattr__(self, "compensation_wants_results", shape.results)

    def _payload_shape(
        self, remote: Remote, what: str, counts: tuple[int, ...]
    ) -> CallShape:
        if remote.payload is None:
            return UNKNOWN
        shape = "(ctx)" if counts == (1,) else "(ctx) or (ctx, result)"
        rule = f"the {what} payload builder must take {shape}"
        return checked_shape(self.name, remote.payload, counts, rule)

    @property
    def lock_specs(self) -> tuple[Lock, ...]:
        """``locks`` as the ``Lock`` objects they were made into."""
        return cast(tuple[Lock, ...], self.locks)  # normalised in __post_init__

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.action)

    @property
    def is_remote(self) -> bool:
        """The action is a command to another service."""
        return isinstance(self.action, Remote)

    @property
    def output_model(self) -> type[BaseModel] | None:
        """The model the step's result is validated against: ``output``, or
        the ``reply`` model of a remote action."""
        if isinstance(self.action, Remote):
            return self.action.reply
        return self.output

    @property
    def compensation_is_remote(self) -> bool:
        return isinstance(self.compensate, Remote)

    @property
    def is_sub_saga(self) -> bool:
        """The action runs another saga as a child instance."""
        return isinstance(self.action, SubSaga)

    @property
    def rolls_back_child(self) -> bool:
        """The compensation is the rollback of the step's child saga."""
        return isinstance(self.compensate, SubSaga)

    @property
    def reply_timeout(self) -> float:
        """How long a remote action waits for its reply."""
        return self.timeout if self.timeout is not None else DEFAULT_REPLY_TIMEOUT

    @property
    def compensation_reply_timeout(self) -> float:
        if self.compensation_timeout is not None:
            return self.compensation_timeout
        return DEFAULT_REPLY_TIMEOUT


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
        self.name = _check_name("Saga", name)
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
