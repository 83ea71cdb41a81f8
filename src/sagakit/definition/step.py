"""``Step``: one unit of a saga, its action and compensation, checked as it
is built.

A step is validated on its own, before any saga holds it: its name, the
shape of its action, compensation and payload builders (which of them take
the result or ``results``), its timeouts, retry policies, locks and
``after``. What depends on the other steps (duplicate names, the pivot's
place, the graph) is checked by :class:`~sagakit.definition.saga.Saga`.
Separate from :mod:`sagakit.definition.saga` because a step's checks are
most of a definition's code and need nothing of the saga around it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import BaseModel

from sagakit.definition.lock import Lock, step_locks
from sagakit.definition.remote import (
    DEFAULT_REPLY_TIMEOUT,
    Remote,
    check_step_remotes,
)
from sagakit.definition.retry import COMPENSATION_RETRY, NO_RETRY, RetryPolicy
from sagakit.definition.signature import UNKNOWN, CallShape, checked_shape
from sagakit.definition.subsaga import SubSaga, check_step
from sagakit.errors import DefinitionError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")


def check_name(kind: str, name: object) -> str:
    """``name`` if it is a valid name for a ``kind`` (``Step``, ``Saga``)."""
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
        check_name("Step", self.name)
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
