"""Operator actions in the engine: retry a failed saga, resume a failed
rollback, cancel a running saga."""

from __future__ import annotations

import pytest

from sagakit.definition import Parallel, RetryPolicy, Saga, Step
from sagakit.engine import (
    CancelRequested,
    Compensate,
    CompensationAttemptFailed,
    CompensationSucceeded,
    FinishSaga,
    ResumeRequested,
    RetryRequested,
    RunStep,
    SagaStarted,
    SagaStatus,
    StepAttemptFailed,
    StepStatus,
    StepSucceeded,
    decide,
    initial_state,
)
from sagakit.engine.decide import Decision
from sagakit.engine.state import ErrorInfo, SagaState
from sagakit.errors import StateError

BOOM = ErrorInfo("Boom", "no")


def act(ctx: object) -> None:
    return None


SAGA = Saga(
    "op",
    [
        Step("a", act, compensate=act),
        Step(
            "b",
            act,
            compensate=act,
            compensation_retry=RetryPolicy(attempts=2, backoff=0, jitter=0),
        ),
        Step("pivot", act, pivot=True),
        Step("after", act, retry=RetryPolicy(attempts=2, backoff=0, jitter=0)),
    ],
)


def run(state: SagaState, *events: object) -> Decision:
    decision = Decision(state, ())
    for event in events:
        decision = decide(SAGA, decision.state, event)  # type: ignore[arg-type]
    return decision


def started() -> Decision:
    return decide(SAGA, initial_state(SAGA, "s1"), SagaStarted(1.0))


def test_retry_a_failed_saga_with_a_fresh_budget() -> None:
    d = run(
        started().state,
        StepSucceeded("a", None, 2.0),
        StepSucceeded("b", None, 3.0),
        StepSucceeded("pivot", None, 4.0),
        StepAttemptFailed("after", BOOM, True, 5.0),
        StepAttemptFailed("after", BOOM, True, 6.0),
    )
    assert d.state.status is SagaStatus.FAILED
    assert d.state.step("after").attempts == 2
    retried = decide(SAGA, d.state, RetryRequested(10.0))
    assert retried.commands == (RunStep("after", 3),)
    assert retried.state.status is SagaStatus.RUNNING
    assert retried.state.error is None
    # a fresh budget: one more failure still retries (2 attempts per round)
    again = decide(SAGA, retried.state, StepAttemptFailed("after", BOOM, True, 11.0))
    assert again.commands == (RunStep("after", 4, 0.0),)
    done = decide(SAGA, again.state, StepSucceeded("after", None, 12.0))
    assert done.state.status is SagaStatus.SUCCEEDED
    assert done.commands == (FinishSaga(SagaStatus.SUCCEEDED),)
    assert SagaState.from_dict(retried.state.to_dict()) == retried.state


def test_resume_a_failed_rollback() -> None:
    d = run(
        started().state,
        StepSucceeded("a", None, 2.0),
        StepSucceeded("b", None, 3.0),
        StepAttemptFailed("pivot", BOOM, False, 4.0),
        CompensationAttemptFailed("b", BOOM, True, 5.0),
        CompensationAttemptFailed("b", BOOM, True, 6.0),
    )
    assert d.state.status is SagaStatus.COMPENSATION_FAILED
    resumed = decide(SAGA, d.state, ResumeRequested(10.0))
    assert resumed.commands == (Compensate("b", 3),)
    assert resumed.state.status is SagaStatus.COMPENSATING
    assert resumed.state.compensation_error is None
    assert resumed.state.error == BOOM  # the original failure is kept
    d = decide(SAGA, resumed.state, CompensationSucceeded("b", 11.0))
    assert d.commands == (Compensate("a", 1),)
    d = decide(SAGA, d.state, CompensationSucceeded("a", 12.0))
    assert d.state.status is SagaStatus.COMPENSATED


def test_cancel_waits_for_steps_in_flight_then_compensates() -> None:
    saga = Saga(
        "par",
        [
            Step("a", act, compensate=act),
            Parallel(Step("b", act, compensate=act), Step("c", act, compensate=act)),
            Step("d", act),
        ],
    )
    d = decide(saga, initial_state(saga, "s2"), SagaStarted(1.0))
    d = decide(saga, d.state, StepSucceeded("a", None, 2.0))
    d = decide(saga, d.state, StepSucceeded("b", None, 3.0))
    cancelled = decide(saga, d.state, CancelRequested(4.0, "customer changed mind"))
    assert cancelled.commands == ()  # c is still running
    assert cancelled.state.status is SagaStatus.COMPENSATING
    assert cancelled.state.error == ErrorInfo("Cancelled", "customer changed mind")
    d = decide(saga, cancelled.state, StepSucceeded("c", None, 5.0))
    # the siblings are undone together, a once both are
    assert d.commands == (Compensate("c", 1), Compensate("b", 1))
    assert d.state.step("d").status is StepStatus.PENDING
    d = decide(saga, d.state, CompensationSucceeded("b", 6.0))
    assert d.commands == ()
    d = decide(saga, d.state, CompensationSucceeded("c", 7.0))
    assert d.commands == (Compensate("a", 1),)


@pytest.mark.parametrize(
    ("events", "action", "message"),
    [
        ((), RetryRequested(9.0), "only a failed saga"),
        ((), ResumeRequested(9.0), "only a compensation_failed"),
        (
            (
                StepSucceeded("a", None, 2.0),
                StepSucceeded("b", None, 3.0),
                StepSucceeded("pivot", None, 4.0),
            ),
            CancelRequested(9.0),
            "past its pivot",
        ),
        (
            (StepAttemptFailed("a", BOOM, False, 2.0),),
            CancelRequested(9.0),
            "only a running",
        ),
    ],
)
def test_operator_actions_are_refused_when_they_do_not_fit(
    events: tuple[object, ...], action: object, message: str
) -> None:
    state = run(started().state, *events).state
    with pytest.raises(StateError, match=message):
        decide(SAGA, state, action)  # type: ignore[arg-type]
