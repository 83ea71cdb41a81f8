"""The engine: one pure function from (definition, state, event) to a decision.

``decide`` does no I/O, reads no clock and draws no random numbers: time and
jitter arrive inside events. It raises :class:`~sagakit.errors.StateError` only
for events that do not fit the state (a stale or duplicate report); a failing
user step is an ordinary event, never an exception.

Rules it guarantees (checked by property tests):

* a step starts as soon as every step it depends on succeeded (for a list of
  stages: stages run in order, a stage's steps start together); the saga
  succeeds when every step did;
* after the first permanent failure no forward step starts; the other steps of
  a ``fail_fast`` group still running are cancelled (``CancelSteps``);
* compensations run exactly for completed steps that have one (plus failed
  steps marked ``compensate_on_failure``), once every in-flight step has
  settled, each only after everything downstream of its step was undone:
  independent branches concurrently (see :mod:`sagakit.engine.rollback`);
* a failure after the pivot succeeded ends in ``failed`` with nothing
  compensated;
* a remote action whose reply deadline passes sends its ``on_timeout``
  command (``SendCancel``) in the decision that fails or retries it;
* a compensation that fails beyond its policy ends in ``compensation_failed``,
  keeping the original and every compensation error (at once under the
  ``stop`` policy, after every other compensation was tried under
  ``continue``);
* a step that declares locks starts only in the commit that takes them
  (``AcquireLocks`` -> ``LocksAcquired``), waits or fails when they are
  busy, and an instance that ends holds no lock (see
  :mod:`sagakit.engine.locks`).

This module dispatches each event and holds the rarer handlers: recovery
after a crash, reply deadlines and lock outcomes. A step's own reports (the
hot path) are handled in :mod:`sagakit.engine.progress`, the operator's
actions on a whole saga in :mod:`sagakit.engine.operator`, a rollback in
:mod:`sagakit.engine.rollback`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga, Step
from sagakit.engine import locks
from sagakit.engine.child import children_in_flight, rollback_requested
from sagakit.engine.commands import Command, Decision, RunStep, SendCancel
from sagakit.engine.events import (
    CancelRequested,
    CompensationAttemptFailed,
    CompensationRetryRequested,
    CompensationSkipped,
    CompensationSucceeded,
    DeadlinePassed,
    Event,
    LockKeyFailed,
    LockReleaseRequested,
    LocksAcquired,
    LocksBusy,
    LocksFreed,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    RollbackRequested,
    SagaForked,
    SagaResumed,
    SagaStarted,
    StepAttemptFailed,
    StepMarkedCompensated,
    StepSucceeded,
    UnpauseRequested,
)
from sagakit.engine.operator import on_operator_action
from sagakit.engine.pause import hold, pause, unpause
from sagakit.engine.poison import count_crashes
from sagakit.engine.progress import (
    PENDING_STEP,
    action_deadline,
    fail_step,
    go_on,
    on_forked,
    on_started,
    on_step_failed,
    on_step_succeeded,
)
from sagakit.engine.repair import repair
from sagakit.engine.rollback import (
    on_compensation_failed,
    on_compensation_succeeded,
    resume_rollback,
    settle_failure,
)
from sagakit.engine.state import (
    INTERRUPTED,
    ErrorInfo,
    SagaState,
    SagaStatus,
    StepStatus,
)
from sagakit.errors import StateError

__all__ = ["Decision", "decide", "initial_state"]

_RUNNING = StepStatus.RUNNING


def initial_state(saga: Saga[Any], saga_id: str) -> SagaState:
    """A fresh instance: nothing run yet."""
    return SagaState(
        saga_id=saga_id,
        saga_name=saga.name,
        steps=dict.fromkeys(saga.step_names, PENDING_STEP),  # immutable: shared
    )


_REPAIRS = (CompensationRetryRequested, StepMarkedCompensated, CompensationSkipped)
"""An operator's actions on one compensation (see :mod:`.repair`): checked
after the outcomes, so they cost those nothing."""
_OPERATOR = (RetryRequested, ResumeRequested, CancelRequested, LockReleaseRequested)


def decide(saga: Saga[Any], state: SagaState, event: Event) -> Decision:
    outcome = _OUTCOMES.get(type(event))  # the usual case: what the chain reaches
    if outcome is not None and not state.paused and not state.status.terminal:
        decision = outcome(saga, state, event)
    elif isinstance(event, _OPERATOR):
        decision = on_operator_action(saga, state, event)
    elif isinstance(event, RollbackRequested):  # from its parent (sub-sagas)
        decision = rollback_requested(saga, state, event)
    elif isinstance(event, PauseRequested):
        decision = Decision(pause(state, event), ())
    elif isinstance(event, UnpauseRequested):
        decision = Decision(*unpause(saga, state, event))
    elif state.paused:  # outcomes are recorded; what would start is held back
        decision = _outcome(saga, state, event)
        decision = Decision(*hold(decision.state, decision.commands, event.at))
    elif (
        isinstance(event, SagaResumed)
        and event.max_crashes is not None
        and event.crashed
    ):
        resumed = _outcome(saga, state, event)
        decision = Decision(
            *count_crashes(
                saga,
                state,
                resumed.state,
                resumed.commands,
                at=event.at,
                max_crashes=event.max_crashes,
            )
        )
    else:
        decision = _outcome(saga, state, event)
    if decision.state.locks is None:  # no lock held or awaited: the usual case
        return decision
    return locks.settle(decision)


def _outcome(saga: Saga[Any], state: SagaState, event: Event) -> Decision:
    if state.status.terminal:
        if isinstance(event, _REPAIRS):  # on a compensation_failed saga
            return repair(saga, state, event)
        raise StateError(
            f"saga {state.saga_id}: already {state.status.value}, "
            f"{type(event).__name__} ignored"
        )
    if isinstance(event, StepSucceeded):
        return on_step_succeeded(saga, state, event)
    if isinstance(event, StepAttemptFailed):
        return on_step_failed(saga, state, event)
    if isinstance(event, CompensationSucceeded):
        return on_compensation_succeeded(saga, state, event)
    if isinstance(event, CompensationAttemptFailed):
        return on_compensation_failed(saga, state, event)
    if isinstance(event, SagaStarted):
        return on_started(saga, state, event.at)
    if isinstance(event, SagaResumed):
        return _on_resumed(saga, state, event.at)
    if isinstance(event, DeadlinePassed):
        return _on_deadline(saga, state, event)
    if isinstance(event, _REPAIRS):  # held by a pause, if paused
        return repair(saga, state, event)
    if isinstance(event, SagaForked):
        return on_forked(saga, state, event.at)
    if isinstance(event, (LocksAcquired, LocksBusy, LockKeyFailed, LocksFreed)):
        return _on_locks(saga, state, event)
    raise StateError(f"saga {state.saga_id}: unknown event {event!r}")


# -- recovery and deadlines ------------------------------------------------


def _on_resumed(saga: Saga[Any], state: SagaState, at: float) -> Decision:
    """Re-issue the work an interrupted worker left unfinished.

    Local forward steps that were running are run again while the saga runs
    forward (at-least-once for the steps in flight; committed steps never
    re-run). Remote steps keep waiting: their command is in the outbox or
    delivered, and their reply deadline still holds. When the saga was already
    rolling back, a local step that was in flight counts as failed with an
    unknown outcome and is compensated if it asks for that; local
    compensations in flight run again. A sub-saga's child runs on: its step
    is watched again (see :mod:`sagakit.engine.child`).
    """
    steps = state.steps
    if state.status is SagaStatus.RUNNING:
        commands = tuple(
            RunStep(n, max(1, steps[n].attempts))
            for n in saga.graph.order
            if steps[n].status is _RUNNING and not saga.step(n).is_remote
        )
        return go_on(saga, state, at, commands)
    if state.compensations is not None:
        return resume_rollback(saga, state, at)
    children = children_in_flight(saga, state)  # they run on: watched again
    for name in saga.graph.order:
        spec = saga.step(name)
        if steps[name].status is _RUNNING and not (spec.is_remote or spec.is_sub_saga):
            state = state.with_step(name, status=StepStatus.FAILED, error=INTERRUPTED)
            if spec.compensate_on_failure:
                state = state.but(completed=(*state.completed, name))
    decision = settle_failure(saga, state, at)
    return Decision(decision.state, (*children, *decision.commands))


def _reply_timeout(spec: Step, seconds: float) -> ErrorInfo:
    target = spec.compensate if spec.compensation_is_remote else spec.action
    where = target.destination if isinstance(target, Remote) else spec.name
    return ErrorInfo("ReplyTimeout", f"no reply from {where!r} within {seconds:g}s")


def _on_deadline(saga: Saga[Any], state: SagaState, event: DeadlinePassed) -> Decision:
    """Fail every remote action or compensation whose reply deadline passed
    (an action's ``on_timeout`` command goes out first: ``SendCancel``)."""
    commands: list[Command] = []
    for name in list(state.steps):
        current = state.step(name)
        if current.deadline is None or current.deadline > event.at:
            continue
        spec = saga.step(name)
        if state.status.terminal:
            break
        if current.status is _RUNNING:
            if isinstance(spec.action, Remote) and spec.action.on_timeout is not None:
                commands.append(SendCancel(name, current.attempts))
            error = _reply_timeout(spec, spec.reply_timeout)
            retryable = spec.retry.retries(TimeoutError(error.message))
            failed = StepAttemptFailed(name, error, retryable, event.at, event.jitter)
            decision = on_step_failed(saga, state, failed)
        elif current.status is StepStatus.COMPENSATING:
            error = _reply_timeout(spec, spec.compensation_reply_timeout)
            retryable = spec.compensation_retry.retries(TimeoutError(error.message))
            comp = CompensationAttemptFailed(
                name, error, retryable, event.at, event.jitter
            )
            decision = on_compensation_failed(saga, state, comp)
        else:
            continue
        state = decision.state
        commands.extend(decision.commands)
    for name, error in locks.expired(state, event.at):  # waited too long
        decision = fail_step(saga, state, name, error, event.at, ran=False)
        state = decision.state
        commands.extend(decision.commands)
    return Decision(state, tuple(commands))


# -- semantic locks (see sagakit.engine.locks) -------------------------------


def _on_locks(
    saga: Saga[Any],
    state: SagaState,
    event: LocksAcquired | LocksBusy | LockKeyFailed | LocksFreed,
) -> Decision:
    if isinstance(event, LocksFreed):
        return Decision(state, locks.ask_again(state))
    if isinstance(event, LockKeyFailed):
        locks.waiting_for(state, event.step, "lock key failure")
        return fail_step(saga, state, event.step, event.error, event.at, ran=False)
    if isinstance(event, LocksBusy):
        waited = locks.busy(saga, state, event)
        if isinstance(waited, ErrorInfo):
            return fail_step(saga, state, event.step, waited, event.at, ran=False)
        return Decision(waited, ())
    state = locks.acquired(saga, state, event)
    name, current = event.step, state.step(event.step)
    attempt = current.attempts + 1  # 1, or the next one of an operator's retry
    state = state.with_step(
        name,
        status=_RUNNING,
        attempts=attempt,
        retry_base=current.attempts,
        deadline=action_deadline(saga.step(name), event.at),
    )
    level = saga.graph.level[name]
    if level > state.stage:
        state = state.but(stage=level)
    return Decision(state, (RunStep(name, attempt),))


# what _outcome does for each kind of event (exact types) when not paused or ended
_OUTCOMES: dict[type, Callable[[Saga[Any], SagaState, Any], Decision]] = {
    StepSucceeded: on_step_succeeded,
    StepAttemptFailed: on_step_failed,
    CompensationSucceeded: on_compensation_succeeded,
    CompensationAttemptFailed: on_compensation_failed,
    SagaStarted: lambda saga, state, event: on_started(saga, state, event.at),
}
