"""Rolling a saga back: which compensations run, when, and how it ends.

Once a failure has settled (nothing runs forward any more), the completed
steps that have a compensation (and failed ``compensate_on_failure`` steps)
are listed in ``SagaState.compensations``, last completed first. A listed
compensation starts as soon as every listed step downstream of its step
(``Graph.descendants``) is settled: compensated, or, under the ``continue``
policy, failed for good. So a sequence is undone one step at a time in
reverse, and independent branches (the steps of a parallel group) at once.

A compensation that fails beyond its retry policy is recorded
(``SagaState.compensation_errors``). Under ``stop`` no further compensation starts: the
saga waits for those in flight, then ends ``compensation_failed``. Under
``continue`` everything else is still attempted first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sagakit.definition.remote import waits_for_reply
from sagakit.definition.saga import Saga, Step
from sagakit.engine.commands import Command, Compensate, Decision, FinishSaga
from sagakit.engine.events import (
    CompensationAttemptFailed,
    CompensationSucceeded,
    ResumeRequested,
)
from sagakit.engine.state import SagaState, SagaStatus, StepState, StepStatus
from sagakit.errors import StateError

_RUNNING = StepStatus.RUNNING
_COMPENSATING = StepStatus.COMPENSATING
_COMPENSATION_FAILED = StepStatus.COMPENSATION_FAILED


def compensation_deadline(spec: Step, at: float, delay: float = 0.0) -> float | None:
    """When a remote compensation sent at ``at`` (after ``delay``) times out;
    ``None`` for one that is local or not awaited (``awaited=False``)."""
    if not waits_for_reply(spec.compensate):
        return None
    return at + delay + spec.compensation_reply_timeout


def past_pivot(saga: Saga[Any], state: SagaState) -> bool:
    """The pivot succeeded: nothing can be compensated any more."""
    pivot = saga.pivot
    return pivot is not None and state.step(pivot).status is StepStatus.SUCCEEDED


def settle_failure(saga: Saga[Any], state: SagaState, at: float) -> Decision:
    """After a failure: wait for in-flight steps, then roll back (or give up)."""
    if any(s.status is _RUNNING for s in state.steps.values()):
        return Decision(state, ())
    if past_pivot(saga, state):
        state = state.but(status=SagaStatus.FAILED, compensations=())
        return Decision(state, (FinishSaga(SagaStatus.FAILED),))
    if state.compensations is None:
        queue = tuple(
            name
            for name in reversed(state.completed)
            if saga.step(name).compensate is not None
        )
        state = state.but(compensations=queue)
    return advance(saga, state, at)


def advance(saga: Saga[Any], state: SagaState, at: float) -> Decision:
    """Start every compensation that may start now, or end the rollback."""
    listed = state.compensations
    assert listed is not None  # noqa: S101 - internal invariant
    steps = state.steps
    statuses = [steps[name].status for name in listed]
    failed = _COMPENSATION_FAILED in statuses
    in_flight = _COMPENSATING in statuses
    if failed:
        unsettled = {
            name
            for name, status in zip(listed, statuses, strict=True)
            if status is not _COMPENSATION_FAILED
        }
    else:
        unsettled = set(listed)
    if not unsettled or (failed and saga.on_compensation_failure == "stop"):
        if in_flight:  # stopping: those already running settle first
            return Decision(state, ())
        end = SagaStatus.COMPENSATION_FAILED if failed else SagaStatus.COMPENSATED
        return Decision(state.but(status=end), (FinishSaga(end),))
    ready = _ready(saga, state, unsettled)
    commands: list[Command] = []
    for name in listed if len(ready) > 1 else ready:  # in the listed order
        if name in ready:
            state, command = start_compensation(saga, state, name, at)
            commands.append(command)
    return Decision(state, tuple(commands))


def _ready(saga: Saga[Any], state: SagaState, unsettled: set[str]) -> set[str]:
    """The unsettled compensations not started that have nothing unsettled
    downstream of their step."""
    graph = saga.graph
    if graph.linear:  # the common shape: only the one furthest down may run
        name = max(unsettled, key=graph.level.__getitem__)
        candidates: Iterable[str] = (name,)
    else:
        candidates = unsettled
    steps = state.steps
    descendants = graph.descendants
    return {
        name
        for name in candidates
        if steps[name].status is not _COMPENSATING
        and descendants[name].isdisjoint(unsettled)
    }


def start_compensation(
    saga: Saga[Any], state: SagaState, name: str, at: float
) -> tuple[SagaState, Compensate]:
    """Start the compensation of ``name`` (its next attempt)."""
    attempt = state.step(name).compensation_attempts + 1
    state = state.with_step(
        name,
        status=_COMPENSATING,
        compensation_attempts=attempt,
        deadline=compensation_deadline(saga.step(name), at) if saga.sends else None,
    )
    return state, Compensate(name, attempt)


def compensating_step(
    state: SagaState, step: str, what: str, attempt: int | None = None
) -> StepState:
    """The state of ``step``, whose compensation must be in flight."""
    current = state.steps.get(step)
    if (
        state.status is not SagaStatus.COMPENSATING
        or current is None
        or current.status is not _COMPENSATING  # only a listed one is
    ):
        raise StateError(
            f"saga {state.saga_id}: {what} for step {step!r} which is not being "
            "compensated (stale or duplicate)"
        )
    if attempt is not None:
        check_attempt(
            state,
            what,
            f"compensating {step!r}",
            attempt,
            current.compensation_attempts,
        )
    return current


def check_attempt(
    state: SagaState,
    what: str,
    doing: str,
    attempt: int | None,
    at: int,
) -> None:
    """``StateError`` if a report for ``attempt`` of ``doing`` (which is at
    attempt ``at``) is stale."""
    if attempt is not None and attempt != at:
        raise StateError(
            f"saga {state.saga_id}: {what} for attempt {attempt} of {doing}, "
            f"which is at attempt {at} (stale)"
        )


def on_compensation_succeeded(
    saga: Saga[Any], state: SagaState, event: CompensationSucceeded
) -> Decision:
    current = compensating_step(
        state, event.step, "compensation success", event.attempt
    )
    steps = dict(state.steps)  # one copy of the state for both changes
    steps[event.step] = current.but(status=StepStatus.COMPENSATED, deadline=None)
    assert state.compensations is not None  # noqa: S101 - checked above
    listed = state.compensations
    if listed[0] == event.step:  # a sequence is undone head first
        rest = listed[1:]
    else:
        rest = tuple(n for n in listed if n != event.step)
    return advance(saga, state.but(steps=steps, compensations=rest), event.at)


def on_compensation_failed(
    saga: Saga[Any], state: SagaState, event: CompensationAttemptFailed
) -> Decision:
    current = compensating_step(
        state, event.step, "compensation failure", event.attempt
    )
    spec = saga.step(event.step)
    policy = spec.compensation_retry
    made = current.compensation_attempts - current.compensation_retry_base
    if event.retryable and made < policy.attempts:
        attempt = current.compensation_attempts + 1
        delay = policy.delay(current.compensation_attempts, event.jitter)
        state = state.with_step(
            event.step,
            compensation_attempts=attempt,
            deadline=compensation_deadline(spec, event.at, delay),
        )
        return Decision(state, (Compensate(event.step, attempt, delay),))
    state = state.with_step(event.step, status=_COMPENSATION_FAILED, deadline=None)
    if state.compensation_step is None:
        state = state.but(compensation_step=event.step, compensation_error=event.error)
    else:
        later = (*state.later_compensation_errors, (event.step, event.error))
        state = state.but(later_compensation_errors=later)
    return advance(saga, state, event.at)


def resume_rollback(saga: Saga[Any], state: SagaState, at: float) -> Decision:
    """A new worker takes over a rollback: local compensations that were in
    flight run again (at least once), and so are fire-and-forget ones (sent
    again: the same message, which the participant's inbox drops if it got
    it); awaited remote ones keep waiting for their reply or deadline."""
    assert state.compensations is not None  # noqa: S101 - caller checks
    commands: list[Command] = []
    for name in state.compensations:
        current = state.step(name)
        if current.status is not _COMPENSATING:
            continue
        if waits_for_reply(saga.step(name).compensate):
            continue  # its reply, or its deadline, will come
        attempt = max(1, current.compensation_attempts)
        state = state.with_step(name, compensation_attempts=attempt)
        commands.append(Compensate(name, attempt))
    decision = advance(saga, state, at)
    return Decision(decision.state, (*commands, *decision.commands))


def resume_requested(
    saga: Saga[Any], state: SagaState, event: ResumeRequested
) -> Decision:
    """An operator fixed what broke the rollback: every compensation that has
    not succeeded is attempted again (a fresh retry budget for those that
    failed), in reverse dependency order."""
    if state.status is not SagaStatus.COMPENSATION_FAILED or not state.compensations:
        raise StateError(
            f"saga {state.saga_id} is {state.status.value}: only a "
            "compensation_failed saga can be resumed"
        )
    listed = state.compensations
    state = state.but(
        status=SagaStatus.COMPENSATING,
        compensation_step=None,
        compensation_error=None,
        later_compensation_errors=(),
    )
    for name in listed:
        current = state.step(name)
        if current.status is _COMPENSATION_FAILED:
            # back to what it was before its compensation started
            undone = StepStatus.FAILED if current.error else StepStatus.SUCCEEDED
            state = state.with_step(
                name,
                status=undone,
                compensation_retry_base=current.compensation_attempts,
            )
    return advance(saga, state, event.at)
