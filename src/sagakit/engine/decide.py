"""The engine: one pure function from (definition, state, event) to a decision.

``decide`` does no I/O, reads no clock and draws no random numbers: time and
jitter arrive inside events. It raises :class:`~sagakit.errors.StateError` only
for events that do not fit the state (a stale or duplicate report); a failing
user step is an ordinary event, never an exception.

Rules it guarantees (checked by property tests):

* stages run in order; a stage's steps start together;
* after the first permanent failure no forward step starts;
* compensations run one at a time, exactly for completed steps that have one
  (plus failed steps marked ``compensate_on_failure``), in reverse completion
  order, and only once every in-flight step has settled;
* a failure after the pivot succeeded ends in ``failed`` with nothing
  compensated;
* a compensation that fails beyond its policy ends in ``compensation_failed``,
  keeping both the original and the compensation error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga, Step
from sagakit.engine.commands import Command, Compensate, FinishSaga, RunStep
from sagakit.engine.events import (
    CancelRequested,
    CompensationAttemptFailed,
    CompensationSucceeded,
    DeadlinePassed,
    Event,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    SagaResumed,
    SagaStarted,
    StepAttemptFailed,
    StepSucceeded,
    UnpauseRequested,
)
from sagakit.engine.pause import hold, pause, unpause
from sagakit.engine.state import (
    INTERRUPTED,
    ErrorInfo,
    SagaState,
    SagaStatus,
    StepState,
    StepStatus,
)
from sagakit.errors import StateError


@dataclass(frozen=True, slots=True)
class Decision:
    state: SagaState
    commands: tuple[Command, ...]


def initial_state(saga: Saga[Any], saga_id: str) -> SagaState:
    """A fresh instance: nothing run yet."""
    return SagaState(
        saga_id=saga_id,
        saga_name=saga.name,
        steps={s.name: StepState() for s in saga},
    )


def decide(saga: Saga[Any], state: SagaState, event: Event) -> Decision:
    if isinstance(event, (RetryRequested, ResumeRequested, CancelRequested)):
        return _operator(saga, state, event)
    if isinstance(event, PauseRequested):
        return Decision(pause(state, event), ())
    if isinstance(event, UnpauseRequested):
        return Decision(*unpause(saga, state, event))
    if state.paused:  # outcomes are recorded; what would start is held back
        decision = _outcome(saga, state, event)
        return Decision(*hold(decision.state, decision.commands, event.at))
    return _outcome(saga, state, event)


def _outcome(saga: Saga[Any], state: SagaState, event: Event) -> Decision:
    if state.status.terminal:
        raise StateError(
            f"saga {state.saga_id}: already {state.status.value}, "
            f"{type(event).__name__} ignored"
        )
    if isinstance(event, SagaStarted):
        return _on_started(saga, state, event.at)
    if isinstance(event, SagaResumed):
        return _on_resumed(saga, state, event.at)
    if isinstance(event, DeadlinePassed):
        return _on_deadline(saga, state, event)
    if isinstance(event, StepSucceeded):
        return _on_step_succeeded(saga, state, event)
    if isinstance(event, StepAttemptFailed):
        return _on_step_failed(saga, state, event)
    if isinstance(event, CompensationSucceeded):
        return _on_compensation_succeeded(saga, state, event)
    if isinstance(event, CompensationAttemptFailed):
        return _on_compensation_failed(saga, state, event)
    raise StateError(f"saga {state.saga_id}: unknown event {event!r}")


# -- forward ---------------------------------------------------------------


def _action_deadline(spec: Step, at: float, delay: float = 0.0) -> float | None:
    return at + delay + spec.reply_timeout if spec.is_remote else None


def _compensation_deadline(spec: Step, at: float, delay: float = 0.0) -> float | None:
    if not spec.compensation_is_remote:
        return None
    return at + delay + spec.compensation_reply_timeout


def _start_stage(saga: Saga[Any], state: SagaState, stage: int, at: float) -> Decision:
    if stage >= len(saga.stages):
        done = state.but(status=SagaStatus.SUCCEEDED, stage=stage)
        return Decision(done, (FinishSaga(SagaStatus.SUCCEEDED),))
    state = state.but(stage=stage)
    commands: list[Command] = []
    for s in saga.stages[stage]:
        state = state.with_step(
            s.name,
            status=StepStatus.RUNNING,
            attempts=1,
            deadline=_action_deadline(s, at),
        )
        commands.append(RunStep(s.name, 1))
    return Decision(state, tuple(commands))


def _on_started(saga: Saga[Any], state: SagaState, at: float) -> Decision:
    if state.stage != 0 or any(
        s.status is not StepStatus.PENDING for s in state.steps.values()
    ):
        raise StateError(f"saga {state.saga_id}: already started")
    return _start_stage(saga, state, 0, at)


def _running_step(
    state: SagaState, step: str, what: str, attempt: int | None = None
) -> StepState:
    current = state.steps.get(step)
    if current is None:
        raise StateError(f"saga {state.saga_id}: {what} for unknown step {step!r}")
    if current.status is not StepStatus.RUNNING:
        raise StateError(
            f"saga {state.saga_id}: {what} for step {step!r} which is "
            f"{current.status.value} (stale or duplicate)"
        )
    if attempt is not None and attempt != current.attempts:
        raise StateError(
            f"saga {state.saga_id}: {what} for attempt {attempt} of step {step!r}, "
            f"which is at attempt {current.attempts} (stale)"
        )
    return current


def _on_step_succeeded(
    saga: Saga[Any], state: SagaState, event: StepSucceeded
) -> Decision:
    _running_step(state, event.step, "success", event.attempt)
    state = state.with_step(
        event.step,
        status=StepStatus.SUCCEEDED,
        result=event.result,
        error=None,
        deadline=None,
    )
    state = state.but(completed=(*state.completed, event.step))
    if state.status is SagaStatus.COMPENSATING:
        return _settle_failure(saga, state, event.at)
    stage_names = [s.name for s in saga.stages[state.stage]]
    if all(state.step(n).status is StepStatus.SUCCEEDED for n in stage_names):
        return _start_stage(saga, state, state.stage + 1, event.at)
    return Decision(state, ())


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
    saga: Saga[Any], state: SagaState, step: str, error: ErrorInfo, at: float
) -> Decision:
    state = state.with_step(step, status=StepStatus.FAILED, error=error, deadline=None)
    if saga.step(step).compensate_on_failure:
        state = replace(state, completed=(*state.completed, step))
    if state.status is SagaStatus.RUNNING:
        state = replace(
            state, status=SagaStatus.COMPENSATING, failed_step=step, error=error
        )
    return _settle_failure(saga, state, at)


def _in_flight(state: SagaState) -> bool:
    return any(s.status is StepStatus.RUNNING for s in state.steps.values())


def _past_pivot(saga: Saga[Any], state: SagaState) -> bool:
    if saga.pivot_stage is None:
        return False
    pivot = saga.stages[saga.pivot_stage][0].name
    return state.step(pivot).status is StepStatus.SUCCEEDED


def _settle_failure(saga: Saga[Any], state: SagaState, at: float) -> Decision:
    """After a failure: wait for in-flight steps, then roll back (or give up)."""
    if _in_flight(state):
        return Decision(state, ())
    if _past_pivot(saga, state):
        state = replace(state, status=SagaStatus.FAILED, compensations=())
        return Decision(state, (FinishSaga(SagaStatus.FAILED),))
    queue = tuple(
        name
        for name in reversed(state.completed)
        if saga.step(name).compensate is not None
    )
    state = replace(state, compensations=queue)
    return _next_compensation(saga, state, at)


# -- compensation ----------------------------------------------------------


def _next_compensation(saga: Saga[Any], state: SagaState, at: float) -> Decision:
    assert state.compensations is not None  # noqa: S101 - internal invariant
    if not state.compensations:
        state = replace(state, status=SagaStatus.COMPENSATED)
        return Decision(state, (FinishSaga(SagaStatus.COMPENSATED),))
    head = state.compensations[0]
    state = state.with_step(
        head,
        status=StepStatus.COMPENSATING,
        compensation_attempts=1,
        deadline=_compensation_deadline(saga.step(head), at),
    )
    return Decision(state, (Compensate(head, 1),))


def _compensating_step(
    state: SagaState, step: str, what: str, attempt: int | None = None
) -> StepState:
    if (
        state.status is not SagaStatus.COMPENSATING
        or not state.compensations
        or state.compensations[0] != step
        or state.step(step).status is not StepStatus.COMPENSATING
    ):
        raise StateError(
            f"saga {state.saga_id}: {what} for step {step!r} which is not being "
            "compensated (stale or duplicate)"
        )
    current = state.step(step)
    if attempt is not None and attempt != current.compensation_attempts:
        raise StateError(
            f"saga {state.saga_id}: {what} for attempt {attempt} of compensating "
            f"{step!r}, which is at attempt {current.compensation_attempts} (stale)"
        )
    return current


def _on_compensation_succeeded(
    saga: Saga[Any], state: SagaState, event: CompensationSucceeded
) -> Decision:
    _compensating_step(state, event.step, "compensation success", event.attempt)
    state = state.with_step(event.step, status=StepStatus.COMPENSATED, deadline=None)
    assert state.compensations is not None  # noqa: S101 - checked above
    state = state.but(compensations=state.compensations[1:])
    return _next_compensation(saga, state, event.at)


def _on_compensation_failed(
    saga: Saga[Any], state: SagaState, event: CompensationAttemptFailed
) -> Decision:
    current = _compensating_step(
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
            deadline=_compensation_deadline(spec, event.at, delay),
        )
        return Decision(state, (Compensate(event.step, attempt, delay),))
    state = state.with_step(
        event.step, status=StepStatus.COMPENSATION_FAILED, deadline=None
    )
    state = replace(
        state,
        status=SagaStatus.COMPENSATION_FAILED,
        compensation_step=event.step,
        compensation_error=event.error,
    )
    return Decision(state, (FinishSaga(SagaStatus.COMPENSATION_FAILED),))


# -- recovery and deadlines ------------------------------------------------


def _on_resumed(saga: Saga[Any], state: SagaState, at: float) -> Decision:
    """Re-issue the work an interrupted worker left unfinished.

    Local forward steps that were running are run again while the saga runs
    forward (at-least-once for the step in flight; committed steps never
    re-run). Remote steps keep waiting: their command is in the outbox or
    delivered, and their reply deadline still holds. When the saga was already
    rolling back, a local step that was in flight counts as failed with an
    unknown outcome and is compensated if it asks for that.
    """
    running = [
        s
        for s in saga.stages[min(state.stage, len(saga.stages) - 1)]
        if state.step(s.name).status is StepStatus.RUNNING
    ]
    if state.status is SagaStatus.RUNNING:
        commands = tuple(
            RunStep(s.name, max(1, state.step(s.name).attempts))
            for s in running
            if not s.is_remote
        )
        if not running:  # crashed between commits of a stage transition
            done = all(
                state.step(s.name).status is StepStatus.SUCCEEDED
                for s in saga.stages[state.stage]
            )  # else the stage never started (state saved before SagaStarted)
            stage = state.stage + 1 if done else state.stage
            return _start_stage(saga, state, stage, at)
        return Decision(state, commands)
    # compensating
    if state.compensations is None:
        for name, s in list(state.steps.items()):
            if s.status is StepStatus.RUNNING and not saga.step(name).is_remote:
                state = state.with_step(
                    name, status=StepStatus.FAILED, error=INTERRUPTED
                )
                if saga.step(name).compensate_on_failure:
                    state = replace(state, completed=(*state.completed, name))
        return _settle_failure(saga, state, at)
    if not state.compensations:
        return _next_compensation(saga, state, at)
    head = state.compensations[0]
    if saga.step(head).compensation_is_remote:
        return Decision(state, ())  # its reply, or its deadline, will come
    attempt = max(1, state.step(head).compensation_attempts)
    state = state.with_step(
        head, status=StepStatus.COMPENSATING, compensation_attempts=attempt
    )
    return Decision(state, (Compensate(head, attempt),))


def _reply_timeout(spec: Step, seconds: float) -> ErrorInfo:
    target = spec.compensate if spec.compensation_is_remote else spec.action
    where = target.destination if isinstance(target, Remote) else spec.name
    return ErrorInfo("ReplyTimeout", f"no reply from {where!r} within {seconds:g}s")


def _on_deadline(saga: Saga[Any], state: SagaState, event: DeadlinePassed) -> Decision:
    """Fail every remote action or compensation whose reply deadline passed."""
    commands: list[Command] = []
    for name in list(state.steps):
        current = state.step(name)
        if current.deadline is None or current.deadline > event.at:
            continue
        spec = saga.step(name)
        if state.status.terminal:
            break
        if current.status is StepStatus.RUNNING:
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
            decision = _on_compensation_failed(saga, state, comp)
        else:
            continue
        state = decision.state
        commands.extend(decision.commands)
    return Decision(state, tuple(commands))


# -- operator actions ------------------------------------------------------


def _operator(
    saga: Saga[Any],
    state: SagaState,
    event: RetryRequested | ResumeRequested | CancelRequested,
) -> Decision:
    if isinstance(event, RetryRequested):
        if state.status is not SagaStatus.FAILED:
            raise StateError(
                f"saga {state.saga_id} is {state.status.value}: only a failed saga "
                "(a step failed after the pivot) can be retried"
            )
        state = replace(
            state,
            status=SagaStatus.RUNNING,
            compensations=None,
            failed_step=None,
            error=None,
        )
        commands: list[Command] = []
        for s in saga.stages[state.stage]:
            current = state.step(s.name)
            if current.status is not StepStatus.FAILED:
                continue
            attempt = current.attempts + 1
            state = state.with_step(
                s.name,
                status=StepStatus.RUNNING,
                attempts=attempt,
                retry_base=current.attempts,
                deadline=_action_deadline(s, event.at),
            )
            commands.append(RunStep(s.name, attempt))
        return Decision(state, tuple(commands))
    if isinstance(event, ResumeRequested):
        if (
            state.status is not SagaStatus.COMPENSATION_FAILED
            or not state.compensations
        ):
            raise StateError(
                f"saga {state.saga_id} is {state.status.value}: only a "
                "compensation_failed saga can be resumed"
            )
        head = state.compensations[0]
        current = state.step(head)
        attempt = current.compensation_attempts + 1
        state = replace(
            state,
            status=SagaStatus.COMPENSATING,
            compensation_step=None,
            compensation_error=None,
        ).with_step(
            head,
            status=StepStatus.COMPENSATING,
            compensation_attempts=attempt,
            compensation_retry_base=current.compensation_attempts,
            deadline=_compensation_deadline(saga.step(head), event.at),
        )
        return Decision(state, (Compensate(head, attempt),))
    if state.status is not SagaStatus.RUNNING:
        raise StateError(
            f"saga {state.saga_id} is {state.status.value}: only a running saga "
            "can be cancelled"
        )
    if state.paused:
        raise StateError(
            f"saga {state.saga_id} is paused: unpause it before cancelling it"
        )
    if _past_pivot(saga, state):
        raise StateError(
            f"saga {state.saga_id} is past its pivot: it can no longer be "
            "cancelled (it will be finished forward)"
        )
    error = ErrorInfo("Cancelled", event.reason)
    state = replace(state, status=SagaStatus.COMPENSATING, error=error)
    return _settle_failure(saga, state, event.at)
