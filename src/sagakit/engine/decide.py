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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga, Step
from sagakit.engine import locks
from sagakit.engine.child import children_in_flight, rollback_requested
from sagakit.engine.commands import (
    CancelSteps,
    Command,
    Decision,
    FinishSaga,
    RunStep,
    SendCancel,
    make_decision,
    make_run_step,
)
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
from sagakit.engine.pause import hold, pause, unpause
from sagakit.engine.poison import count_crashes
from sagakit.engine.repair import repair
from sagakit.engine.rollback import (
    check_attempt,
    on_compensation_failed,
    on_compensation_succeeded,
    past_pivot,
    resume_requested,
    resume_rollback,
    settle_failure,
)
from sagakit.engine.state import (
    INTERRUPTED,
    ErrorInfo,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
)
from sagakit.errors import StateError

__all__ = ["Decision", "decide", "initial_state"]

_PENDING = StepStatus.PENDING
_RUNNING = StepStatus.RUNNING
_SUCCEEDED = StepStatus.SUCCEEDED
_PENDING_STEP = StepState()
_SUCCEEDED_COMMANDS = (FinishSaga(SagaStatus.SUCCEEDED),)  # immutable: shared


def initial_state(saga: Saga[Any], saga_id: str) -> SagaState:
    """A fresh instance: nothing run yet."""
    return SagaState(
        saga_id=saga_id,
        saga_name=saga.name,
        steps=dict.fromkeys(saga.step_names, _PENDING_STEP),  # immutable: shared
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
        decision = _operator(saga, state, event)
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
        return _on_step_succeeded(saga, state, event)
    if isinstance(event, StepAttemptFailed):
        return _on_step_failed(saga, state, event)
    if isinstance(event, CompensationSucceeded):
        return on_compensation_succeeded(saga, state, event)
    if isinstance(event, CompensationAttemptFailed):
        return on_compensation_failed(saga, state, event)
    if isinstance(event, SagaStarted):
        return _on_started(saga, state, event.at)
    if isinstance(event, SagaResumed):
        return _on_resumed(saga, state, event.at)
    if isinstance(event, DeadlinePassed):
        return _on_deadline(saga, state, event)
    if isinstance(event, _REPAIRS):  # held by a pause, if paused
        return repair(saga, state, event)
    if isinstance(event, SagaForked):
        return _on_forked(saga, state, event.at)
    if isinstance(event, (LocksAcquired, LocksBusy, LockKeyFailed, LocksFreed)):
        return _on_locks(saga, state, event)
    raise StateError(f"saga {state.saga_id}: unknown event {event!r}")


# -- forward ---------------------------------------------------------------


def _action_deadline(spec: Step, at: float, delay: float = 0.0) -> float | None:
    return at + delay + spec.reply_timeout if spec.is_remote else None


def _startable(saga: Saga[Any], state: SagaState, name: str) -> bool:
    """Pending, every dependency succeeded, and not overtaken: nothing
    downstream of it has started (a step a migration inserted upstream of
    where the instance stood never runs)."""
    steps = state.steps
    if steps[name].status is not _PENDING:
        return False
    graph = saga.graph
    return all(steps[d].status is _SUCCEEDED for d in graph.deps[name]) and all(
        steps[d].status is _PENDING for d in graph.descendants[name]
    )


def _start(
    saga: Saga[Any],
    state: SagaState,
    names: list[str],
    at: float,
    steps: dict[str, StepState] | None = None,
    **changes: Any,
) -> Decision:
    """Start ``names`` (each at attempt 1). ``steps`` (a copy of the state's,
    changed in place) and ``changes`` go into the same new state: one copy
    of it for the whole transition. Steps that take locks wait for them
    first (see :mod:`sagakit.engine.locks`)."""
    level = saga.graph.level
    stage = state.stage
    if steps is None:
        steps = dict(state.steps)
    commands: list[Command] = []
    if saga.lock_steps:
        state, names, commands = locks.gate(saga, state, names, at)
    sends = saga.sends  # only a remote step has a reply deadline
    for name in names:
        steps[name] = (steps.get(name) or _PENDING_STEP).but(
            status=_RUNNING,
            attempts=1,
            deadline=_action_deadline(saga.step(name), at) if sends else None,
        )
        commands.append(make_run_step(name, 1))
        stage = max(stage, level[name])
    return make_decision(state.but(steps=steps, stage=stage, **changes), (*commands,))


def _go_on(
    saga: Saga[Any], state: SagaState, at: float, commands: tuple[Command, ...] = ()
) -> Decision:
    """Running forward with ``commands`` issued: also start every step that
    may start; with nothing left to run, the saga succeeded."""
    ready = [n for n in saga.graph.order if _startable(saga, state, n)]
    if ready:
        started = _start(saga, state, ready, at)
        return Decision(started.state, (*commands, *started.commands))
    if commands or any(s.status is _RUNNING for s in state.steps.values()):
        return Decision(state, commands)
    return _succeeded(saga, state)


def _succeeded(saga: Saga[Any], state: SagaState, **changes: Any) -> Decision:
    """The saga succeeded (with ``changes`` in the same copy of its state)."""
    done = state.but(status=SagaStatus.SUCCEEDED, stage=len(saga.stages), **changes)
    return make_decision(done, _SUCCEEDED_COMMANDS)


def _on_started(saga: Saga[Any], state: SagaState, at: float) -> Decision:
    if state.stage != 0 or any(s.status is not _PENDING for s in state.steps.values()):
        raise StateError(f"saga {state.saga_id}: already started")
    return _start(saga, state, list(saga.graph.roots), at)


def _on_forked(saga: Saga[Any], state: SagaState, at: float) -> Decision:
    """A fork (see :func:`~sagakit.engine.repair.fork_state`) starts: the
    steps before the one it re-runs from succeeded already."""
    if any(s.status not in (_PENDING, _SUCCEEDED) for s in state.steps.values()):
        raise StateError(f"saga {state.saga_id}: already started")
    return _go_on(saga, state, at)


def _running_step(
    state: SagaState, step: str, what: str, attempt: int | None = None
) -> StepState:
    current = state.steps.get(step)
    if current is None:
        raise StateError(f"saga {state.saga_id}: {what} for unknown step {step!r}")
    if current.status is not _RUNNING:
        raise StateError(
            f"saga {state.saga_id}: {what} for step {step!r} which is "
            f"{current.status.value} (stale or duplicate)"
        )
    if attempt is not None:
        check_attempt(state, what, f"step {step!r}", attempt, current.attempts)
    return current


def _on_step_succeeded(
    saga: Saga[Any], state: SagaState, event: StepSucceeded
) -> Decision:
    current = _running_step(state, event.step, "success", event.attempt)
    steps = dict(state.steps)
    steps[event.step] = current.but(
        status=_SUCCEEDED, result=event.result, error=None, deadline=None
    )
    completed = (*state.completed, event.step)
    if state.status is SagaStatus.COMPENSATING:
        return settle_failure(
            saga, state.but(steps=steps, completed=completed), event.at
        )
    # the hot path: only the dependents of this step can start now
    deps = saga.graph.deps
    ready = [
        d
        for d in saga.graph.dependents[event.step]
        if steps[d].status is _PENDING
        and all(steps[n].status is _SUCCEEDED for n in deps[d])
    ]
    if ready:  # one copy of the state for the success and the starts
        return _start(saga, state, ready, event.at, steps, completed=completed)
    waiting = False
    for s in steps.values():
        if s.status is _RUNNING:
            return Decision(state.but(steps=steps, completed=completed), ())
        waiting = waiting or s.status is _PENDING
    if waiting:  # a join still waits, or steps a migration left behind
        return _go_on(saga, state.but(steps=steps, completed=completed), event.at)
    return _succeeded(saga, state, steps=steps, completed=completed)


def _on_step_failed(
    saga: Saga[Any], state: SagaState, event: StepAttemptFailed
) -> Decision:
    current = _running_step(state, event.step, "failure", event.attempt)
    spec = saga.step(event.step)
    if (
        state.status is SagaStatus.RUNNING
        and event.retryable
        and current.attempts - current.retry_base < spec.retry.attempts
    ):
        attempt = current.attempts + 1
        delay = spec.retry.delay(current.attempts, event.jitter)
        state = state.with_step(
            event.step,
            attempts=attempt,
            error=event.error,
            deadline=_action_deadline(spec, event.at, delay),
        )
        return Decision(state, (RunStep(event.step, attempt, delay),))
    return _fail_step(saga, state, event.step, event.error, event.at)


def _fail_step(
    saga: Saga[Any],
    state: SagaState,
    step: str,
    error: ErrorInfo,
    at: float,
    *,
    ran: bool = True,
) -> Decision:
    """``step`` failed for good (``ran=False``: it never started, as when
    its locks were refused; then its compensation never runs)."""
    steps = dict(state.steps)  # one copy of the state for every change
    steps[step] = (steps.get(step) or _PENDING_STEP).but(
        status=StepStatus.FAILED, error=error, deadline=None
    )
    changes: dict[str, Any] = {"steps": steps}
    if ran and saga.step(step).compensate_on_failure:
        changes["completed"] = (*state.completed, step)
    if state.status is SagaStatus.RUNNING:  # the first failure
        changes.update(status=SagaStatus.COMPENSATING, failed_step=step, error=error)
    state, cancel = _fail_fast(saga, state.but(**changes), step)
    decision = settle_failure(saga, state, at)
    return Decision(decision.state, (*cancel, *decision.commands))


def _fail_fast(
    saga: Saga[Any], state: SagaState, step: str
) -> tuple[SagaState, tuple[Command, ...]]:
    """``step`` failed for good: if it is the first of a fail-fast group to,
    cancel the group's other steps still running (local ones; a remote
    participant cannot be recalled). A run the pause held back was never
    sent: it is taken back at once."""
    group = saga.graph.fail_fast.get(step)
    if group is None:
        return state, ()
    others = [n for n in group.steps if n != step]
    if any(state.step(n).status is StepStatus.FAILED for n in others):
        return state, ()  # not the first: the cancel went out already
    cancel: list[str] = []
    for name in others:
        current = state.step(name)
        if current.status is not _RUNNING:
            continue
        if name in state.held:
            state = _take_back(saga, state, name, current)
        elif not saga.step(name).is_remote:
            cancel.append(name)
    return state, ((CancelSteps(tuple(cancel), group.grace),) if cancel else ())


def _take_back(
    saga: Saga[Any], state: SagaState, name: str, current: StepState
) -> SagaState:
    """A held run of ``name`` that will not be sent: never started, or (a
    retry) failed with the error of its last attempt."""
    held = tuple(n for n in state.held if n != name)
    if current.attempts <= 1:
        return state.with_step(name, status=_PENDING, attempts=0).but(held=held)
    state = state.with_step(
        name, status=StepStatus.FAILED, attempts=current.attempts - 1
    )
    if saga.step(name).compensate_on_failure:
        state = state.but(completed=(*state.completed, name))
    return state.but(held=held)


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
        return _go_on(saga, state, at, commands)
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
            decision = _on_step_failed(saga, state, failed)
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
        decision = _fail_step(saga, state, name, error, event.at, ran=False)
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
        return _fail_step(saga, state, event.step, event.error, event.at, ran=False)
    if isinstance(event, LocksBusy):
        waited = locks.busy(saga, state, event)
        if isinstance(waited, ErrorInfo):
            return _fail_step(saga, state, event.step, waited, event.at, ran=False)
        return Decision(waited, ())
    state = locks.acquired(saga, state, event)
    name, current = event.step, state.step(event.step)
    attempt = current.attempts + 1  # 1, or the next one of an operator's retry
    state = state.with_step(
        name,
        status=_RUNNING,
        attempts=attempt,
        retry_base=current.attempts,
        deadline=_action_deadline(saga.step(name), event.at),
    )
    level = saga.graph.level[name]
    if level > state.stage:
        state = state.but(stage=level)
    return Decision(state, (RunStep(name, attempt),))


# -- operator actions ------------------------------------------------------


def _operator(
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
            state = state.with_step(name, status=_PENDING)
            continue
        attempt = current.attempts + 1
        state = state.with_step(
            name,
            status=_RUNNING,
            attempts=attempt,
            retry_base=current.attempts,
            deadline=_action_deadline(saga.step(name), event.at),
        )
        commands.append(RunStep(name, attempt))
    return _go_on(saga, state, event.at, tuple(commands))


# what _outcome does for each kind of event (exact types) when not paused or ended
_OUTCOMES: dict[type, Callable[[Saga[Any], SagaState, Any], Decision]] = {
    StepSucceeded: _on_step_succeeded,
    StepAttemptFailed: _on_step_failed,
    CompensationSucceeded: on_compensation_succeeded,
    CompensationAttemptFailed: on_compensation_failed,
    SagaStarted: lambda saga, state, event: _on_started(saga, state, event.at),
}
