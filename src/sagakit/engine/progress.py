"""A saga going forward: what a step's own report does to its instance.

``decide`` hands each ``SagaStarted``, ``SagaForked``, ``StepSucceeded`` and
``StepAttemptFailed`` here: the steps that may start now start (each at
attempt 1, after its locks if it declares any: :func:`locks.gate`), a
failure is retried within the step's policy or fails the step for good,
cancelling the rest of a ``fail_fast`` group, and the rollback takes over
(:func:`~sagakit.engine.rollback.settle_failure`). With nothing left to
run, the saga succeeded.

It is separate from :mod:`sagakit.engine.decide` (the dispatch, recovery,
deadlines and lock outcomes) because it is the hot path: a saga that
succeeds goes through nothing else, so what it costs per transition is read
here alone. The other handlers reuse :func:`go_on`, :func:`fail_step`
and :func:`action_deadline`.
"""

from __future__ import annotations

from typing import Any

from sagakit.definition.saga import Saga, Step
from sagakit.engine import locks
from sagakit.engine.commands import (
    CancelSteps,
    Command,
    Decision,
    FinishSaga,
    RunStep,
    make_decision,
    make_run_step,
)
from sagakit.engine.events import StepAttemptFailed, StepSucceeded
from sagakit.engine.rollback import check_attempt, settle_failure
from sagakit.engine.state import (
    ErrorInfo,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
)
from sagakit.errors import StateError

_PENDING = StepStatus.PENDING
_RUNNING = StepStatus.RUNNING
_SUCCEEDED = StepStatus.SUCCEEDED
PENDING_STEP = StepState()
"""A step that has not run: immutable, so every fresh instance shares it."""
_SUCCEEDED_COMMANDS = (FinishSaga(SagaStatus.SUCCEEDED),)  # immutable: shared


def action_deadline(spec: Step, at: float, delay: float = 0.0) -> float | None:
    """When a remote action sent at ``at`` (after ``delay``) times out;
    ``None`` for a local one."""
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
        steps[name] = (steps.get(name) or PENDING_STEP).but(
            status=_RUNNING,
            attempts=1,
            deadline=action_deadline(saga.step(name), at) if sends else None,
        )
        commands.append(make_run_step(name, 1))
        stage = max(stage, level[name])
    return make_decision(state.but(steps=steps, stage=stage, **changes), (*commands,))


def go_on(
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


def on_started(saga: Saga[Any], state: SagaState, at: float) -> Decision:
    if state.stage != 0 or any(s.status is not _PENDING for s in state.steps.values()):
        raise StateError(f"saga {state.saga_id}: already started")
    return _start(saga, state, list(saga.graph.roots), at)


def on_forked(saga: Saga[Any], state: SagaState, at: float) -> Decision:
    """A fork (see :func:`~sagakit.engine.repair.fork_state`) starts: the
    steps before the one it re-runs from succeeded already."""
    if any(s.status not in (_PENDING, _SUCCEEDED) for s in state.steps.values()):
        raise StateError(f"saga {state.saga_id}: already started")
    return go_on(saga, state, at)


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


def on_step_succeeded(
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
        return go_on(saga, state.but(steps=steps, completed=completed), event.at)
    return _succeeded(saga, state, steps=steps, completed=completed)


def on_step_failed(
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
            deadline=action_deadline(spec, event.at, delay),
        )
        return Decision(state, (RunStep(event.step, attempt, delay),))
    return fail_step(saga, state, event.step, event.error, event.at)


def fail_step(
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
    steps[step] = (steps.get(step) or PENDING_STEP).but(
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
