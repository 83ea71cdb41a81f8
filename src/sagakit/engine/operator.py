"""An operator's actions on a whole saga: retry, resume, cancel, and
taking back one of its locks, as pure decisions.

- ``RetryRequested``: a saga that failed past its pivot runs its failed
  steps again, each with a fresh budget (a step that takes locks asks for
  them first), and then what waited for them;
- ``ResumeRequested``: a ``compensation_failed`` saga attempts again every
  compensation that has not succeeded
  (:func:`~sagakit.engine.rollback.resume_requested`);
- ``CancelRequested``: a running saga that has not passed its pivot rolls
  back as after a failure, with ``Cancelled`` as its error;
- ``LockReleaseRequested``: the saga no longer holds that key
  (:func:`~sagakit.engine.locks.release_requested`).

Each is refused (``StateError``, nothing changes) where it does not fit the
saga's status. They reach ``decide`` whether the saga is paused or has
ended, so they are dispatched apart from the step outcomes
(:mod:`sagakit.engine.progress`); actions on one compensation are in
:mod:`sagakit.engine.repair`.
"""

from __future__ import annotations

from typing import Any

from sagakit.definition.saga import Saga
from sagakit.engine import locks
from sagakit.engine.commands import Command, Decision, RunStep
from sagakit.engine.events import (
    CancelRequested,
    LockReleaseRequested,
    ResumeRequested,
    RetryRequested,
)
from sagakit.engine.progress import action_deadline, go_on
from sagakit.engine.rollback import past_pivot, resume_requested, settle_failure
from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus, StepStatus
from sagakit.errors import StateError


def on_operator_action(
    saga: Saga[Any],
    state: SagaState,
    event: RetryRequested | ResumeRequested | CancelRequested | LockReleaseRequested,
) -> Decision:
    if isinstance(event, LockReleaseRequested):
        return Decision(locks.release_requested(state, event), ())
    if isinstance(event, RetryRequested):
        return _retry(saga, state, event)
    if isinstance(event, ResumeRequested):
        return resume_requested(saga, state, event)
    if state.status is not SagaStatus.RUNNING:
        raise StateError(
            f"saga {state.saga_id} is {state.status.value}: only a running saga "
            "can be cancelled"
        )
    if state.paused:
        raise StateError(
            f"saga {state.saga_id} is paused: unpause it before cancelling it"
        )
    if past_pivot(saga, state):
        raise StateError(
            f"saga {state.saga_id} is past its pivot: it can no longer be "
            "cancelled (it will be finished forward)"
        )
    error = ErrorInfo("Cancelled", event.reason)
    state = state.but(status=SagaStatus.COMPENSATING, error=error)
    return settle_failure(saga, state, event.at)


def _retry(saga: Saga[Any], state: SagaState, event: RetryRequested) -> Decision:
    """Run the failed steps again (fresh budgets), and what waited for them."""
    if state.status is not SagaStatus.FAILED:
        raise StateError(
            f"saga {state.saga_id} is {state.status.value}: only a failed saga "
            "(a step failed after the pivot) can be retried"
        )
    state = state.but(
        status=SagaStatus.RUNNING,
        compensations=None,
        failed_step=None,
        error=None,
    )
    commands: list[Command] = []
    for name in saga.graph.order:
        current = state.step(name)
        if current.status is not StepStatus.FAILED:
            continue
        if name in saga.lock_steps:  # its locks first (they went at the end)
            state = state.with_step(name, status=StepStatus.PENDING)
            continue
        attempt = current.attempts + 1
        state = state.with_step(
            name,
            status=StepStatus.RUNNING,
            attempts=attempt,
            retry_base=current.attempts,
            deadline=action_deadline(saga.step(name), event.at),
        )
        commands.append(RunStep(name, attempt))
    return go_on(saga, state, event.at, tuple(commands))
