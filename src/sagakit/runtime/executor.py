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
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga, Step
from sagakit.engine.commands import Compensate, RunStep
from sagakit.engine.events import (
    CompensationAttemptFailed,
    CompensationSucceeded,
    Event,
    StepAttemptFailed,
    StepSucceeded,
)
from sagakit.engine.state import SagaState
from sagakit.errors import SagaError
from sagakit.errors import error_info as error_info  # noqa: PLC0414 - old home
from sagakit.observability.observer import NOOP, Observer, StepRun
from sagakit.ports.clock import Clock
from sagakit.ports.store import HistoryEntry

logger = logging.getLogger(__name__)


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
) -> tuple[Event, HistoryEntry, BaseException | None]:
    """Run ``command`` and describe what happened: the event for the engine, the
    history line for the store, and the exception if user code raised one.

    ``observer.step`` wraps the run (not the retry delay before it); ``trace``
    is the saga's trace carrier."""
    if command.delay > 0:
        await clock.sleep(command.delay)
    kind = "action" if isinstance(command, RunStep) else "compensation"
    call = StepRun(saga.name, state.saga_id, command.step, kind, command.attempt)
    with observer.step(call, trace) as scope:
        outcome = await _run(saga, state, context, command, clock=clock, jitter=jitter)
        scope.ended(outcome[1].outcome, outcome[2])
    return outcome


async def _run(
    saga: Saga[Any],
    state: SagaState,
    context: BaseModel,
    command: RunStep | Compensate,
    *,
    clock: Clock,
    jitter: Callable[[], float],
) -> tuple[Event, HistoryEntry, BaseException | None]:
    saga_id = state.saga_id
    spec = saga.step(command.step)
    forward = isinstance(command, RunStep)
    kind = "action" if forward else "compensation"
    started = clock.now()
    try:
        if forward:
            value = await _call(spec, spec.action, (context,), spec.timeout)
            result = _jsonable(spec, value)
        else:
            args: tuple[Any, ...] = (context,)
            if spec.compensation_takes_result:
                args = (context, state.step(spec.name).result)
            await _call(spec, spec.compensate, args, spec.compensation_timeout)
    except Exception as exc:
        at = clock.now()
        info = error_info(exc)
        policy = spec.retry if forward else spec.compensation_retry
        logger.info(
            "step failed" if forward else "compensation failed",
            extra={
                "action": f"{kind}_failed",
                "saga_id": saga_id,
                "step": spec.name,
                "attempt": command.attempt,
                "error": str(info),
            },
        )
        entry = HistoryEntry(
            saga_id, spec.name, kind, command.attempt, "failed", started, at, error=info
        )
        retryable = policy.retries(exc)
        failed: Event = (
            StepAttemptFailed(spec.name, info, retryable, at, jitter())
            if forward
            else CompensationAttemptFailed(spec.name, info, retryable, at, jitter())
        )
        return failed, entry, exc
    at = clock.now()
    if forward:
        entry = HistoryEntry(
            saga_id, spec.name, kind, command.attempt, "succeeded", started, at, result
        )
        return StepSucceeded(spec.name, result, at), entry, None
    entry = HistoryEntry(
        saga_id, spec.name, kind, command.attempt, "succeeded", started, at
    )
    return CompensationSucceeded(spec.name, at), entry, None


async def _call(
    spec: Step,
    fn: Callable[..., Any] | Remote | None,
    args: tuple[Any, ...],
    limit: float | None,
) -> Any:
    assert fn is not None  # noqa: S101 - compensate exists when a Compensate is issued
    if isinstance(fn, Remote):
        raise SagaError(
            f"step {spec.name!r} sends {fn.command!r} to another service: run it "
            "with an orchestrator that has a transport"
        )
    if inspect.iscoroutinefunction(fn):
        awaitable = fn(*args)
    elif not spec.blocking:  # on the loop: no thread hop (and no timeout)
        value = fn(*args)
        return await value if inspect.isawaitable(value) else value
    else:
        awaitable = asyncio.to_thread(fn, *args)
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


def _jsonable(spec: Step, value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise TypeError(
            f"step {spec.name!r} returned {type(value).__name__}, which cannot be "
            "stored as JSON; return JSON-able data or a pydantic model"
        ) from exc
