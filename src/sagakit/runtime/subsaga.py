"""Sub-sagas at run time: creating children, watching them, rolling them back.

The ``RunStep`` of a sub-saga step starts a watcher for the parent
instance: it finds the child (its id is
:func:`~sagakit.runtime.children.child_id`, so creating it is idempotent)
or creates it, recording its parent, and drives it here; it waits for the
child to end and hands the step's outcome to the parent as a delivery, like
a reply. The ``Compensate`` of such a step asks a succeeded child to roll
back (``RollbackRequested``, or ``ResumeRequested`` for a child whose
rollback an earlier attempt saw fail), drives it here, and reports once it
ended.

The child's end is its terminal commit: a watcher in this process is woken
at once (:class:`~sagakit.runtime.children.ChildWatch`); a child driven by
another process is seen by polling the store (every ``Driver.child_poll``
seconds at most). So a crash at any boundary heals: a parent that committed
its step but died before the child existed creates it when it is recovered
(its step runs again); one that died before it learnt of the child's end
finds the ended child; one that died before a rollback was asked (or ended)
asks again or waits again. Each instance driven here has its sub-saga steps
watched from its state after every transition (``watch_all``), whichever
way it came to be driven here (started, recovered, reloaded, taken over for
a reply or a request).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from sagakit.definition.saga import Saga
from sagakit.definition.subsaga import SubSaga
from sagakit.engine.commands import Compensate, RunStep
from sagakit.engine.events import (
    CompensationAttemptFailed,
    CompensationSucceeded,
    Event,
    ResumeRequested,
    RollbackRequested,
    StepAttemptFailed,
    StepSucceeded,
)
from sagakit.engine.results import results_kwargs
from sagakit.engine.state import ParentLink, SagaStatus, StepStatus
from sagakit.errors import (
    ErrorInfo,
    SagaAlreadyExists,
    SagaError,
    StoreError,
    error_info,
)
from sagakit.ports.store import HistoryEntry, SagaRecord
from sagakit.runtime import children
from sagakit.runtime.children import ChildWatch, cancel_children, child_id
from sagakit.runtime.delivery import enqueue
from sagakit.runtime.executor import _entry as run_entry
from sagakit.runtime.instance import Instance

if TYPE_CHECKING:
    from sagakit.runtime.driver import Driver

logger = logging.getLogger("sagakit.runtime.orchestrator")

OUTAGE_PAUSE = 1.0
"""Seconds a watcher waits after a store error before it looks again."""


def is_child_command(saga: Saga[Any], command: RunStep | Compensate) -> bool:
    """``command`` runs or rolls back a child saga."""
    spec = saga.step(command.step)
    return spec.is_sub_saga if isinstance(command, RunStep) else spec.rolls_back_child


def watch(driver: Driver, inst: Instance, command: RunStep | Compensate) -> None:
    """Carry out ``command`` of a sub-saga step in a task of its own (once:
    a watcher already at work on it is left alone)."""
    kind = "action" if isinstance(command, RunStep) else "compensation"
    key = (command.step, kind, command.attempt)
    running = inst.watchers.get(key)
    if running is not None and not running.done():
        return
    task = asyncio.create_task(_watch(driver, inst, command))
    inst.watchers[key] = task
    driver.tasks.add(task)  # stopped with the driver's other tasks

    def forget(done: asyncio.Task[None]) -> None:
        driver.tasks.discard(done)
        if inst.watchers.get(key) is done:
            del inst.watchers[key]
        failed = None if done.cancelled() else done.exception()
        if isinstance(failed, Exception):
            logger.error(
                "sub-saga watch stopped by an internal error",
                exc_info=failed,
                extra={
                    "action": "child_watch_failed",
                    "saga_id": inst.state.saga_id,
                    "step": command.step,
                },
            )

    task.add_done_callback(forget)


def watch_all(driver: Driver, inst: Instance) -> None:
    """Watch every sub-saga step of ``inst`` that runs or is rolled back
    (those a pause held back wait for the unpause)."""
    state = inst.state
    for name, step in state.steps.items():
        if name in state.held or not inst.saga.has_step(name):
            continue
        spec = inst.saga.step(name)
        if spec.is_sub_saga and step.status is StepStatus.RUNNING:
            watch(driver, inst, RunStep(name, max(1, step.attempts)))
        elif spec.rolls_back_child and step.status is StepStatus.COMPENSATING:
            attempt = max(1, step.compensation_attempts)
            watch(driver, inst, Compensate(name, attempt))


def watching(driver: Driver) -> int:
    """How many instances ``driver`` drives only wait (parked) for a child."""
    return sum(i.parked and bool(i.watchers) for i in driver.active.values())


def stop_watching(inst: Instance) -> None:
    for task in list(inst.watchers.values()):
        task.cancel()


async def _watch(driver: Driver, inst: Instance, command: RunStep | Compensate) -> None:
    saga_id = inst.state.saga_id
    started = driver.clock.now()
    while True:
        try:
            if isinstance(command, RunStep):
                event, entry = await _run(driver, inst, command, started)
            else:
                event, entry = await _roll_back(driver, inst, command, started)
            break
        except StoreError as exc:  # an outage: the child is still there
            logger.warning(
                "sub-saga watch failed; retrying",
                extra={"action": "child_retry", "saga_id": saga_id, "error": str(exc)},
            )
            await asyncio.sleep(OUTAGE_PAUSE)
    try:
        await enqueue(inst, event, [entry], None)
    except SagaError as exc:  # the parent moved on elsewhere: it watches there
        logger.info(
            "sub-saga outcome not applied here",
            extra={"action": "child_outcome_dropped", "saga_id": saga_id},
        )
        logger.debug("because: %s", exc)


# -- running a child -------------------------------------------------------------


async def _run(
    driver: Driver, inst: Instance, command: RunStep, started: float
) -> tuple[Event, HistoryEntry]:
    spec = inst.saga.step(command.step)
    sub = spec.action
    assert isinstance(sub, SubSaga)  # noqa: S101 - only sub-saga steps come here
    parent = ParentLink(inst.state.saga_id, spec.name)
    record = await children.current(driver, parent, command.attempt)
    if record is not None and record.saga_id != children.child_id(
        parent.saga_id, spec.name, command.attempt
    ):
        record = await children.retried(driver, record, parent, command.attempt)
    if record is None:
        error = await _create(driver, inst, sub, parent, command.attempt)
        if error is not None:
            return _action_failed(inst, command, error, started, driver.clock.now())
        cid = children.child_id(parent.saga_id, spec.name, command.attempt)
    elif record.state.parent != parent:
        error = ErrorInfo(
            "SubSagaError",
            f"the id {record.saga_id} is taken by a saga that is not this step's",
        )
        return _action_failed(inst, command, error, started, driver.clock.now())
    else:
        cid = record.saga_id
    ended = await children.ended(driver, cid)
    now = driver.clock.now()
    if ended is None or ended.status is not SagaStatus.SUCCEEDED:
        return _action_failed(
            inst, command, children.child_error(cid, ended), started, now
        )
    try:
        result = _output(sub, ended)
    except Exception as exc:
        return _action_failed(inst, command, error_info(exc), started, now)
    entry = run_entry(
        inst.state.saga_id, command, "succeeded", started, now, result=result
    )
    return StepSucceeded(spec.name, result, now, command.attempt), entry


async def _create(
    driver: Driver, inst: Instance, sub: SubSaga[Any], parent: ParentLink, attempt: int
) -> ErrorInfo | None:
    """Create the child and drive it here; the error if its context cannot
    be built (an id another worker created meanwhile is fine)."""
    from sagakit.runtime.client import SagaClient  # noqa: PLC0415 - a cycle

    try:
        context = _context(sub, inst)
    except Exception as exc:
        return error_info(exc)
    cid = children.child_id(parent.saga_id, parent.step, attempt)
    client = SagaClient(driver.store, driver=driver)
    try:
        started = await client.begin(
            sub.saga, context, {"saga_id": cid}, drive=True, parent=parent
        )
    except SagaAlreadyExists:
        return None  # created meanwhile by another worker: it drives it
    except SagaError as exc:
        if isinstance(exc, StoreError):
            raise  # an outage: the watcher tries again
        return error_info(exc)
    if started.instance is not None:
        driver.spawn(started.instance, started.commands)
    return None


def _context(sub: SubSaga[Any], parent: Instance) -> BaseModel:
    """The child's context, built from its parent's."""
    model: type[BaseModel] = sub.saga.context
    if sub.context is None:
        return model.model_validate(parent.context.model_dump(mode="json"))
    wanted = sub.context_wants_results
    kwargs = results_kwargs(parent.saga, parent.state, wanted=wanted)
    built = sub.context(parent.context, **kwargs)
    return built if isinstance(built, model) else model.model_validate(built)


def _output(sub: SubSaga[Any], record: SagaRecord) -> Any:
    """The step's result from the child that succeeded (``record``)."""
    if sub.output is None:
        return record.state.results
    context = sub.saga.context.model_validate(record.context)
    kwargs = results_kwargs(sub.saga, record.state, wanted=sub.output_wants_results)
    return to_jsonable_python(sub.output(context, **kwargs))


# -- rolling a child back --------------------------------------------------------


async def _roll_back(
    driver: Driver, inst: Instance, command: Compensate, started: float
) -> tuple[Event, HistoryEntry]:
    spec = inst.saga.step(command.step)
    parent = ParentLink(inst.state.saga_id, spec.name)
    record = await children.current(driver, parent, inst.state.step(spec.name).attempts)
    while True:
        ended, error = await _undo(driver, record, parent, command.attempt)
        if ended:
            break
        assert record is not None  # noqa: S101 - only a child is waited for
        record = await children.ended(driver, record.saga_id)
    now = driver.clock.now()
    if error is None:
        entry = run_entry(inst.state.saga_id, command, "succeeded", started, now)
        return CompensationSucceeded(spec.name, now, command.attempt), entry
    entry = run_entry(inst.state.saga_id, command, "failed", started, now, error=error)
    failed = CompensationAttemptFailed(
        spec.name, error, False, now, 0.0, command.attempt
    )
    return failed, entry


async def _undo(
    driver: Driver, record: SagaRecord | None, parent: ParentLink, attempt: int
) -> tuple[bool, ErrorInfo | None]:
    """One look at the child being rolled back: (True, None) once it is
    compensated, (True, error) if it cannot be, (False, None) while it has
    yet to end (asking it to roll back, or to resume a rollback that
    failed, if need be)."""
    if record is None:
        return True, ErrorInfo("SubSagaError", "the step's sub-saga no longer exists")
    status = record.status
    if status is SagaStatus.COMPENSATED:
        return True, None
    if status is SagaStatus.FAILED:
        error = f"sub-saga {record.saga_id} failed past its pivot: it cannot be undone"
        return True, ErrorInfo("SubSagaError", error)
    if status is SagaStatus.SUCCEEDED:
        line = children.request_line(
            record.saga_id, "rollback", parent, attempt, driver
        )
        reason = f"rolled back by {parent.saga_id} (step {parent.step})"
        request: Event = RollbackRequested(line.started_at, reason)
    elif status is SagaStatus.COMPENSATION_FAILED:
        if await children.asked(
            driver, record.saga_id, parent, "compensation", attempt
        ):
            return True, children.child_error(record.saga_id, record)
        line = children.request_line(record.saga_id, "resume", parent, attempt, driver)
        request = ResumeRequested(line.started_at)
    else:
        return False, None
    refused = await children.request(driver, record, request, line)
    return refused is not None, refused


# -- the store ---------------------------------------------------------------------


# -- outcomes --------------------------------------------------------------------


def _action_failed(
    inst: Instance, command: RunStep, error: ErrorInfo, started: float, now: float
) -> tuple[Event, HistoryEntry]:
    entry = run_entry(inst.state.saga_id, command, "failed", started, now, error=error)
    failed = StepAttemptFailed(command.step, error, False, now, 0.0, command.attempt)
    return failed, entry


__all__ = [
    "ChildWatch",
    "cancel_children",
    "child_id",
    "is_child_command",
    "stop_watching",
    "watch",
    "watch_all",
    "watching",
]
