"""Cancelling the steps of a fail-fast group (the engine's ``CancelSteps``).

When a step of a ``Parallel(..., on_failure="fail_fast")`` group fails for
good, the engine asks for its siblings still running to be cancelled after
the group's ``grace``. Only a local ``async`` action can be: its task is
cancelled (``asyncio`` cancellation reaches the user's coroutine) and the run
is reported as a failed attempt, ``Cancelled`` and not retryable, so the step
counts as not completed (it is compensated only if it is
``compensate_on_failure``). A run that finishes within the grace is recorded
as usual. A plain function runs in a worker thread, which cannot be
interrupted, and a remote participant cannot be recalled: those are waited
for. If the process dies meanwhile, recovery counts the local steps that were
running as failed with an unknown outcome, as for any rollback.
"""

from __future__ import annotations

import asyncio
import inspect
import logging

from sagakit.engine.commands import CancelSteps, RunStep
from sagakit.engine.events import StepAttemptFailed
from sagakit.errors import ErrorInfo
from sagakit.ports.clock import Clock
from sagakit.ports.store import HistoryEntry
from sagakit.runtime.executor import StepOutcome
from sagakit.runtime.instance import Instance

logger = logging.getLogger("sagakit.runtime.orchestrator")

CANCELLED = "Cancelled"
"""The error type of a run cancelled because a sibling failed."""


def cancel_steps(inst: Instance, command: CancelSteps, clock: Clock) -> None:
    """Cancel, after ``command.grace`` s, the runs of ``command.steps`` that
    can be interrupted and are still going."""
    for name in command.steps:
        task = inst.step_tasks.get(name)
        action = inst.saga.step(name).action
        if task is None or task.done() or not inspect.iscoroutinefunction(action):
            continue  # finished, or cannot be interrupted: waited for
        if command.grace <= 0:
            _cancel(inst, name, task)
            continue
        watcher = asyncio.create_task(_after_grace(inst, name, task, command, clock))
        inst.tasks.add(watcher)
        watcher.add_done_callback(inst.tasks.discard)


async def _after_grace(
    inst: Instance,
    name: str,
    task: asyncio.Task[None],
    command: CancelSteps,
    clock: Clock,
) -> None:
    grace = asyncio.ensure_future(clock.sleep(command.grace))
    try:  # ends with the run, or when the grace is over
        await asyncio.wait({task, grace}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        grace.cancel()
    if not task.done() and inst.step_tasks.get(name) is task:
        _cancel(inst, name, task)


def _cancel(inst: Instance, name: str, task: asyncio.Task[None]) -> None:
    logger.info(
        "step cancelled: a step of its fail-fast group failed",
        extra={"action": "step_cancelled", "saga_id": inst.state.saga_id, "step": name},
    )
    inst.cancelled.add(name)
    task.cancel()


def was_cancelled(inst: Instance, command: RunStep) -> bool:
    """The current task's run of ``command`` was cancelled by
    :func:`cancel_steps` (not because the saga stops being driven here): it
    goes on, to report the cancellation."""
    if command.step not in inst.cancelled:
        return False
    inst.cancelled.discard(command.step)
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    return True


def cancelled(
    saga_id: str, command: RunStep, started: float, now: float
) -> StepOutcome:
    """A cancelled run: a failed attempt, not to be retried."""
    error = ErrorInfo(CANCELLED, "cancelled: another step of its group failed")
    entry = HistoryEntry(
        saga_id=saga_id,
        step=command.step,
        kind="action",
        attempt=command.attempt,
        outcome="failed",
        started_at=started,
        finished_at=now,
        error=error,
    )
    event = StepAttemptFailed(command.step, error, False, now, 0.0, command.attempt)
    return StepOutcome(event, entry)
