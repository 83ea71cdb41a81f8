"""An operator's hand on one compensation, and forks: pure decisions.

- ``CompensationRetryRequested``: a compensation that failed for good runs
  again, alone, with a fresh budget (``ResumeRequested`` retries them all).
  Once it succeeds the rollback goes on as usual: under the ``stop`` policy
  a saga with another failed compensation ends ``compensation_failed``
  again.
- ``StepMarkedCompensated``: the operator undid the step outside the saga;
  its compensation counts as succeeded without running.
- ``CompensationSkipped``: the step stays done (``compensation_skipped``);
  its compensation never runs.

Each is refused (``StateError``, nothing changes) where it would break an
invariant: past the pivot (nothing is compensated there), a saga that is
not rolling back, a step without a compensation or one that never
completed, a compensation that already ended or is running now.

:func:`fork_state` builds the state a fork starts from: the steps before
the chosen one (its ancestors) keep their recorded results, everything
else runs again. It refuses a saga that has not ended, a sub-saga, and a
step whose effect the source does not hand over intact (undone, failed,
still waiting for its compensation, or a sub-saga of the source).
"""

from __future__ import annotations

from typing import Any

from sagakit.definition.saga import Saga, Step
from sagakit.engine.commands import Decision
from sagakit.engine.events import (
    CompensationRetryRequested,
    CompensationSkipped,
    Repair,
    StepMarkedCompensated,
)
from sagakit.engine.rollback import advance, start_compensation
from sagakit.engine.state import SagaState, SagaStatus, StepState, StepStatus
from sagakit.errors import StateError

__all__ = ["changes", "fork_state", "repair"]

_VERB = {
    CompensationRetryRequested: "retry",
    StepMarkedCompensated: "mark compensated",
    CompensationSkipped: "skip",
}
_ROLLING_BACK = (SagaStatus.COMPENSATING, SagaStatus.COMPENSATION_FAILED)


def repair(saga: Saga[Any], state: SagaState, event: Repair) -> Decision:
    """The decision for an operator's action on ``event.step``'s compensation."""
    verb = _VERB[type(event)]
    current = _listed(saga, state, event.step, verb)
    if isinstance(event, CompensationRetryRequested):
        return _retry(saga, state, event, current)
    if current.status is StepStatus.COMPENSATING and event.step not in state.held:
        raise StateError(
            f"saga {state.saga_id}: the compensation of step {event.step!r} is "
            f"running (attempt {current.compensation_attempts}): wait for its "
            "outcome"
        )
    marked = isinstance(event, StepMarkedCompensated)
    settled = StepStatus.COMPENSATED if marked else StepStatus.COMPENSATION_SKIPPED
    state = _forget_error(state, event.step).with_step(
        event.step, status=settled, deadline=None
    )
    assert state.compensations is not None  # noqa: S101 - _listed checked it
    state = state.but(
        status=SagaStatus.COMPENSATING,
        compensations=tuple(n for n in state.compensations if n != event.step),
        held=tuple(n for n in state.held if n != event.step),
        held_due={k: v for k, v in state.held_due.items() if k != event.step},
    )
    return advance(saga, state, event.at)


def _retry(
    saga: Saga[Any],
    state: SagaState,
    event: CompensationRetryRequested,
    current: StepState,
) -> Decision:
    name = event.step
    if current.status is not StepStatus.COMPENSATION_FAILED:
        raise StateError(
            f"saga {state.saga_id}: the compensation of step {name!r} has not "
            f"failed (the step is {current.status.value}): only a compensation "
            "that failed for good can be retried"
        )
    if saga.step(name).rolls_back_child:
        raise StateError(
            f"saga {state.saga_id}: step {name!r} is undone by rolling back its "
            f"sub-saga {state.saga_id}/{name}: resume that saga, then mark the "
            "step compensated"
        )
    undone = StepStatus.FAILED if current.error else StepStatus.SUCCEEDED
    state = _forget_error(state, name).with_step(
        name, status=undone, compensation_retry_base=current.compensation_attempts
    )
    state, command = start_compensation(
        saga, state.but(status=SagaStatus.COMPENSATING), name, event.at
    )
    return Decision(state, (command,))


def _listed(saga: Saga[Any], state: SagaState, name: str, verb: str) -> StepState:
    """The state of ``name``, whose compensation is still to succeed."""
    saga_id = state.saga_id
    if state.status is SagaStatus.FAILED:
        raise StateError(
            f"saga {saga_id} is failed: it went past its pivot, where nothing "
            "is compensated (retry it instead)"
        )
    if state.status not in _ROLLING_BACK or state.compensations is None:
        raise StateError(
            f"saga {saga_id} is {state.status.value}: only a compensating or "
            f"compensation_failed saga has compensations to {verb}"
        )
    spec = _step(saga, state, name)
    if spec.compensate is None:
        raise StateError(
            f"saga {saga_id}: step {name!r} has no compensation, so there is "
            f"nothing to {verb}"
        )
    current = state.step(name)
    if name in state.compensations:
        return current
    if current.status is StepStatus.COMPENSATED:
        why = "its compensation succeeded already"
    elif current.status is StepStatus.COMPENSATION_SKIPPED:
        why = "its compensation was skipped already"
    elif current.status is StepStatus.RUNNING:
        why = "it is still running: the rollback waits for its outcome first"
    else:
        why = f"it is {current.status.value}: it did not complete, nothing to undo"
    raise StateError(f"saga {saga_id}: cannot {verb} step {name!r}: {why}")


def _step(saga: Saga[Any], state: SagaState, name: str) -> Step:
    if not saga.has_step(name):
        steps = ", ".join(s.name for s in saga)
        raise StateError(
            f"saga {state.saga_id} has no step {name!r} (its steps: {steps})"
        )
    return saga.step(name)


def _forget_error(state: SagaState, name: str) -> SagaState:
    """``state`` without the compensation error of ``name``, if it has one."""
    errors = [(s, e) for s, e in state.compensation_errors if s != name]
    first = errors[0] if errors else (None, None)
    return state.but(
        compensation_step=first[0],
        compensation_error=first[1],
        later_compensation_errors=tuple(errors[1:]),
    )


# -- forks -----------------------------------------------------------------


def fork_state(
    saga: Saga[Any], source: SagaState, step: str, saga_id: str
) -> SagaState:
    """The state of a new instance ``saga_id`` that re-runs ``source`` from
    ``step``: the steps ``step`` depends on (directly or not) succeeded with
    their recorded results, the others pending (start it with
    ``SagaForked``). ``StateError`` where ``source`` cannot hand them over."""
    src = source.saga_id
    if not source.status.terminal:
        raise StateError(
            f"saga {src} is {source.status.value}: only a saga that ended can "
            "be forked (cancel it, or wait for it to end)"
        )
    if source.parent is not None:
        raise StateError(
            f"saga {src} is a sub-saga of {source.parent.saga_id} (step "
            f"{source.parent.step!r}): fork that saga instead"
        )
    _step(saga, source, step)
    graph = saga.graph
    kept = [n for n in graph.order if step in graph.descendants[n]]
    steps = {s.name: StepState() for s in saga}
    for name in kept:
        steps[name] = _handed_over(saga, source, name, step)
    return SagaState(
        saga_id=saga_id,
        saga_name=saga.name,
        stage=max((graph.level[n] for n in kept), default=0),
        steps=steps,
        completed=tuple(n for n in source.completed if n in kept),
    )


def _handed_over(saga: Saga[Any], source: SagaState, name: str, step: str) -> StepState:
    """``name``'s state in the fork: succeeded with its recorded result."""
    src, current = source.saga_id, source.step(name)
    instead = f"fork from {name!r} or a step before it"
    if saga.step(name).is_sub_saga:
        raise StateError(
            f"step {name!r} ran the sub-saga {src}/{name}, which a fork cannot "
            f"take over: {instead}"
        )
    waiting = source.compensations is not None and name in source.compensations
    if current.status is StepStatus.SUCCEEDED and waiting:
        raise StateError(
            f"step {name!r} still waits for its compensation in saga {src}: "
            f"skip that compensation or mark it done first, or {instead}"
        )
    if current.status not in (StepStatus.SUCCEEDED, StepStatus.COMPENSATION_SKIPPED):
        compensated = current.status is StepStatus.COMPENSATED
        undone = " (its effect was undone)" if compensated else ""
        raise StateError(
            f"step {name!r} is {current.status.value} in saga {src}{undone}, so "
            f"the fork from {step!r} has no result of it to reuse: {instead}"
        )
    return StepState(
        status=StepStatus.SUCCEEDED, attempts=current.attempts, result=current.result
    )


# -- what changed ----------------------------------------------------------


def changes(before: SagaState, after: SagaState) -> list[str]:
    """What a decision changed, for the audit trail: ``status failed ->
    running``, ``paused``, ``step ship failed -> running``."""
    found = []
    if before.status is not after.status:
        found.append(f"status {before.status.value} -> {after.status.value}")
    if before.paused != after.paused:
        found.append("paused" if after.paused else "unpaused")
    for name, new in after.steps.items():
        old = before.step(name).status
        if old is not new.status:
            found.append(f"step {name} {old.value} -> {new.status.value}")
    return found
