"""Running one step action or compensation and turning its outcome into an event.

This is where user code runs: coroutine functions on the event loop, plain
functions in a worker thread, each under its optional timeout. Whatever
happens becomes an event; user exceptions never escape.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga, Step
from sagakit.definition.subsaga import SubSaga
from sagakit.engine.commands import Compensate, RunStep
from sagakit.engine.events import (
    CompensationAttemptFailed,
    CompensationSucceeded,
    Event,
    StepAttemptFailed,
)
from sagakit.engine.results import first_error, results_kwargs
from sagakit.engine.state import SagaState
from sagakit.errors import ErrorInfo, ResultError, SagaError
from sagakit.errors import error_info as error_info  # noqa: PLC0414 - old home
from sagakit.observability.observer import NOOP, Observer, StepRun
from sagakit.ports.clock import Clock
from sagakit.ports.store import HistoryEntry
from sagakit.runtime.records import history_line, step_succeeded

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What running a step (or a compensation) did: the event for the engine,
    the history line for the store, and the exception user code raised."""

    event: Event
    entry: HistoryEntry
    exception: BaseException | None = None


_new = object.__new__
_set_event = StepOutcome.__dict__["event"].__set__
_set_entry = StepOutcome.__dict__["entry"].__set__
_set_exception = StepOutcome.__dict__["exception"].__set__


def _outcome(event: Event, entry: HistoryEntry) -> StepOutcome:
    """``StepOutcome(event, entry)`` filled slot by slot (see
    :mod:`~sagakit.runtime.records`): a success's, at every step."""
    new = _new(StepOutcome)
    _set_event(new, event)
    _set_entry(new, entry)
    _set_exception(new, None)
    return new


async def execute(
    saga: Saga[Any],
    state: SagaState,
    context: BaseModel,
    command: RunStep | Compensate,
    *,
    clock: Clock,
    jitter: Callable[[], float],
    observer: Observer = NOOP,
    trace: Mapping[str, str] | None = None,
) -> StepOutcome:
    """Run ``command`` and describe what happened: the event for the engine, the
    history line for the store, and the exception if user code raised one.

    ``observer.step`` wraps the run (not the retry delay before it); ``trace``
    is the saga's trace carrier."""
    if command.delay > 0:
        await clock.sleep(command.delay)
    spec = saga.step(command.step)
    if type(observer).step is Observer.step:  # no hook wraps a step: no scope
        return await _run(
            saga, spec, state, context, command, clock=clock, jitter=jitter
        )
    kind = "action" if isinstance(command, RunStep) else "compensation"
    call = StepRun(saga.name, state.saga_id, command.step, kind, command.attempt)
    with observer.step(call, trace) as scope:
        outcome = await _run(
            saga, spec, state, context, command, clock=clock, jitter=jitter
        )
        scope.ended(outcome.entry.outcome, outcome.exception)
    return outcome


async def _run(
    saga: Saga[Any],
    spec: Step,
    state: SagaState,
    context: BaseModel,
    command: RunStep | Compensate,
    *,
    clock: Clock,
    jitter: Callable[[], float],
) -> StepOutcome:
    started = clock.now()
    try:
        result = await _attempt(saga, spec, state, context, command)
    except Exception as exc:
        return _failed(
            state.saga_id,
            spec,
            command,
            exc,
            started=started,
            clock=clock,
            jitter=jitter,
        )
    return _succeeded(
        state.saga_id, spec, command, result, started=started, clock=clock
    )


async def _attempt(
    saga: Saga[Any],
    spec: Step,
    state: SagaState,
    context: BaseModel,
    command: RunStep | Compensate,
) -> Any:
    """Call the user's action (returning its result as JSON-able data) or
    compensation (returning None); whatever they raise propagates."""
    if isinstance(command, RunStep):
        kwargs = results_kwargs(saga, state, wanted=spec.action_wants_results)
        if spec.action_is_coroutine and spec.timeout is None:  # the usual step
            value = await spec.action(context, **kwargs)  # type: ignore[operator]
            if value is not None and inspect.isawaitable(value):
                value = await value
        else:
            value = await _call(spec, spec.action, (context,), kwargs, spec.timeout)
        return _recorded(spec, state, value)
    args: tuple[Any, ...] = (context,)
    if spec.compensation_takes_result:
        args = (context, state.step(spec.name).result)
    kwargs = results_kwargs(saga, state, wanted=spec.compensation_wants_results)
    if spec.compensation_is_coroutine and spec.compensation_timeout is None:
        value = await spec.compensate(*args, **kwargs)  # type: ignore[misc,operator]
        if value is not None and inspect.isawaitable(value):
            await value
        return None
    await _call(spec, spec.compensate, args, kwargs, spec.compensation_timeout)
    return None


def _failed(
    saga_id: str,
    spec: Step,
    command: RunStep | Compensate,
    exc: Exception,
    *,
    started: float,
    clock: Clock,
    jitter: Callable[[], float],
) -> StepOutcome:
    at = clock.now()
    forward = isinstance(command, RunStep)
    info = error_info(exc)
    policy = spec.retry if forward else spec.compensation_retry
    logger.info(
        "step failed" if forward else "compensation failed",
        extra={
            "action": "action_failed" if forward else "compensation_failed",
            "saga_id": saga_id,
            "step": spec.name,
            "attempt": command.attempt,
            "error": str(info),
        },
    )
    entry = _entry(saga_id, command, "failed", started, at, error=info)
    # a result that does not fit its model would not fit the next time either
    retryable = policy.retries(exc) and not isinstance(exc, ResultError)
    failed: Event = (
        StepAttemptFailed(spec.name, info, retryable, at, jitter())
        if forward
        else CompensationAttemptFailed(spec.name, info, retryable, at, jitter())
    )
    return StepOutcome(failed, entry, exc)


def _succeeded(
    saga_id: str,
    spec: Step,
    command: RunStep | Compensate,
    result: Any,
    *,
    started: float,
    clock: Clock,
) -> StepOutcome:
    at = clock.now()
    if isinstance(command, RunStep):
        entry = history_line(
            saga_id,
            command.step,
            "action",
            command.attempt,
            "succeeded",
            started,
            at,
            result,
        )
        return _outcome(step_succeeded(spec.name, result, at), entry)
    entry = _entry(saga_id, command, "succeeded", started, at)
    return StepOutcome(CompensationSucceeded(spec.name, at), entry)


def _entry(
    saga_id: str,
    command: RunStep | Compensate,
    outcome: str,
    started: float,
    at: float,
    *,
    result: Any = None,
    error: ErrorInfo | None = None,
) -> HistoryEntry:
    """The history line of one run of ``command``."""
    kind = "action" if isinstance(command, RunStep) else "compensation"
    return history_line(
        saga_id,
        command.step,
        kind,
        command.attempt,
        outcome,
        started,
        at,
        result,
        error,
    )


def unsendable(
    saga_id: str, command: RunStep | Compensate, exc: Exception, now: float
) -> StepOutcome:
    """A remote command whose message could not be built: it failed at once
    (not retryable), as if its step had raised ``exc``."""
    info = error_info(exc)
    entry = _entry(saga_id, command, "failed", now, now, error=info)
    if isinstance(command, RunStep):
        event: Event = StepAttemptFailed(
            command.step, info, False, now, 0.0, command.attempt
        )
    else:
        event = CompensationAttemptFailed(
            command.step, info, False, now, 0.0, command.attempt
        )
    return StepOutcome(event, entry, exc)


async def _call(
    spec: Step,
    fn: Callable[..., Any] | Remote | SubSaga[Any] | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    limit: float | None,
) -> Any:
    assert fn is not None  # noqa: S101 - compensate exists when a Compensate is issued
    assert not isinstance(fn, SubSaga)  # noqa: S101 - run by runtime.subsaga
    if isinstance(fn, Remote):
        raise SagaError(
            f"step {spec.name!r} sends {fn.command!r} to another service: run it "
            "with an orchestrator that has a transport"
        )
    if inspect.iscoroutinefunction(fn):
        awaitable = fn(*args, **kwargs)
    elif not spec.blocking:  # on the loop: no thread hop (and no timeout)
        value = fn(*args, **kwargs)
        return await value if inspect.isawaitable(value) else value
    else:
        awaitable = asyncio.to_thread(fn, *args, **kwargs)
    if limit is None:
        value = await awaitable
    else:
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                value = await awaitable
        except TimeoutError as exc:
            if deadline.expired():
                raise TimeoutError(
                    f"step {spec.name!r} timed out after {limit}s"
                ) from exc
            raise
    if inspect.isawaitable(value):
        value = await value
    return value


def _recorded(spec: Step, state: SagaState, value: Any) -> Any:
    """What the action returned, as the JSON recorded for the step: checked
    against the step's ``output`` model if it has one."""
    model = spec.output
    if model is not None:
        try:
            value = model.model_validate(value)
        except ValidationError as exc:
            raise ResultError(
                f"saga {state.saga_id}: step {spec.name!r} returned "
                f"{type(value).__name__}, not a valid {model.__name__} "
                f"({first_error(exc)})",
                saga_id=state.saga_id,
                step=spec.name,
            ) from exc
        return value.model_dump(mode="json")
    return None if value is None else _jsonable(spec, value)


def _jsonable(spec: Step, value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise TypeError(
            f"step {spec.name!r} returned {type(value).__name__}, which cannot be "
            "stored as JSON; return JSON-able data or a pydantic model"
        ) from exc
