"""Remote steps in the engine: reply deadlines, stale attempts, resume."""

from __future__ import annotations

import pytest

from sagakit.definition import Parallel, Remote, RetryPolicy, Saga, Step
from sagakit.engine import (
    Compensate,
    CompensationSucceeded,
    DeadlinePassed,
    FinishSaga,
    RunStep,
    SagaResumed,
    SagaStarted,
    SagaStatus,
    StepAttemptFailed,
    StepStatus,
    StepSucceeded,
    decide,
    initial_state,
)
from sagakit.engine.state import ErrorInfo, SagaState
from sagakit.errors import StateError


def local(ctx: object) -> None:
    return None


def undo(ctx: object) -> None:
    return None


ORDER = Saga(
    "order",
    [
        Step("reserve", local, compensate=undo),
        Step(
            "ticket",
            Remote("kitchen.create_ticket"),
            compensate=Remote("kitchen.cancel_ticket"),
            timeout=30,
            compensation_timeout=10,
        ),
        Step(
            "charge",
            Remote("accounting.charge"),
            retry=RetryPolicy(attempts=2, backoff=1.0, jitter=0),
            timeout=5,
        ),
    ],
)


def start(saga: Saga[object] = ORDER, at: float = 100.0):  # type: ignore[no-untyped-def,type-var]
    return decide(saga, initial_state(saga, "s1"), SagaStarted(at))


def test_remote_step_gets_a_deadline_from_its_timeout() -> None:
    d = start()
    d = decide(ORDER, d.state, StepSucceeded("reserve", None, 101.0))
    assert d.commands == (RunStep("ticket", 1),)
    assert d.state.step("ticket").deadline == 131.0
    assert d.state.next_deadline == 131.0
    assert d.state.step("reserve").deadline is None


def test_deadline_passed_fails_the_step_and_compensates() -> None:
    d = start()
    d = decide(ORDER, d.state, StepSucceeded("reserve", None, 101.0))
    early = decide(ORDER, d.state, DeadlinePassed(130.0))
    assert early.state == d.state
    assert early.commands == ()
    late = decide(ORDER, d.state, DeadlinePassed(131.0))
    assert late.state.status is SagaStatus.COMPENSATING
    assert late.state.error is not None
    assert late.state.error.type == "ReplyTimeout"
    assert "'kitchen'" in late.state.error.message
    assert late.commands == (Compensate("reserve", 1),)
    assert late.state.next_deadline is None


def test_timeout_retries_when_the_policy_retries_timeouts() -> None:
    d = start()
    d = decide(ORDER, d.state, StepSucceeded("reserve", None, 101.0))
    d = decide(ORDER, d.state, StepSucceeded("ticket", {"id": 7}, 102.0, attempt=1))
    assert d.state.step("charge").deadline == 107.0
    d = decide(ORDER, d.state, DeadlinePassed(108.0))
    assert d.commands == (RunStep("charge", 2, 1.0),)
    assert d.state.step("charge").deadline == 108.0 + 1.0 + 5
    stale = r"attempt 1 of step .charge., which is at attempt 2 \(stale\)"
    with pytest.raises(StateError, match=stale):
        decide(ORDER, d.state, StepSucceeded("charge", {}, 109.0, attempt=1))
    done = decide(ORDER, d.state, StepSucceeded("charge", {}, 110.0, attempt=2))
    assert done.state.status is SagaStatus.SUCCEEDED
    assert done.commands == (FinishSaga(SagaStatus.SUCCEEDED),)


def test_remote_compensation_has_its_own_deadline() -> None:
    d = start()
    d = decide(ORDER, d.state, StepSucceeded("reserve", None, 101.0))
    d = decide(ORDER, d.state, StepSucceeded("ticket", {"id": 7}, 102.0))
    d = decide(
        ORDER,
        d.state,
        StepAttemptFailed("charge", ErrorInfo("Declined", "no"), False, 103.0),
    )
    assert d.commands == (Compensate("ticket", 1),)
    assert d.state.step("ticket").deadline == 113.0
    timed_out = decide(ORDER, d.state, DeadlinePassed(113.0))
    # compensation retries by its default policy (3 attempts)
    assert timed_out.commands[0].step == "ticket"  # type: ignore[union-attr]
    assert timed_out.state.step("ticket").compensation_attempts == 2
    with pytest.raises(StateError, match="stale"):
        decide(
            ORDER, timed_out.state, CompensationSucceeded("ticket", 114.0, attempt=1)
        )
    ok = decide(
        ORDER, timed_out.state, CompensationSucceeded("ticket", 114.0, attempt=2)
    )
    assert ok.commands == (Compensate("reserve", 1),)
    assert ok.state.step("ticket").status is StepStatus.COMPENSATED


def test_resume_keeps_remote_steps_waiting_and_reruns_local_ones() -> None:
    saga = Saga(
        "mixed",
        [Parallel(Step("local", local), Step("remote", Remote("svc.do"), timeout=9))],
    )
    d = start(saga)
    resumed = decide(saga, d.state, SagaResumed(150.0))
    assert resumed.commands == (RunStep("local", 1),)
    assert resumed.state.step("remote").deadline == 109.0
    only_remote = decide(saga, d.state, StepSucceeded("local", None, 101.0))
    again = decide(saga, only_remote.state, SagaResumed(150.0))
    assert again.commands == ()
    assert again.state == only_remote.state


def test_deadline_state_round_trips() -> None:
    d = start()
    d = decide(ORDER, d.state, StepSucceeded("reserve", None, 101.0))
    assert SagaState.from_dict(d.state.to_dict()) == d.state
