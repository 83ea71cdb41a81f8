"""decide for sub-sagas: rolling back a succeeded saga for its parent
(``RollbackRequested``), and the steps of a parent that runs children."""

from __future__ import annotations

from typing import Any

import pytest

from sagakit import Parallel, Saga, Step, SubSaga
from sagakit.engine import (
    CancelRequested,
    Command,
    Compensate,
    CompensationAttemptFailed,
    CompensationSucceeded,
    ErrorInfo,
    Event,
    FinishSaga,
    PauseRequested,
    ResumeRequested,
    RollbackRequested,
    RunStep,
    SagaResumed,
    SagaStarted,
    SagaState,
    SagaStatus,
    StepAttemptFailed,
    StepStatus,
    StepSucceeded,
    UnpauseRequested,
    decide,
    initial_state,
)
from sagakit.engine.child import ROLLED_BACK
from sagakit.engine.state import INTERRUPTED, ParentLink
from sagakit.errors import StateError
from tests.unit.test_engine_graph import BOOM, UNDO, st

ROLLBACK = RollbackRequested(5.0, "rolled back by p-1 (step pay)")


def play(
    saga: Saga[Any],
    script: list[tuple[Event, tuple[Command, ...]]],
    state: SagaState | None = None,
) -> SagaState:
    """Feed each event, checking the commands it gives; the final state
    (each state survives a round trip through storage)."""
    state = state or initial_state(saga, "c-1")
    for index, (event, expected) in enumerate(script):
        decision = decide(saga, state, event)
        assert decision.commands == expected, f"after event #{index}: {event}"
        state = decision.state
        assert SagaState.from_dict(state.to_dict()) == state
    return state


PAYMENT = Saga(
    "payment",
    [st("hold"), Parallel(st("fee"), st("charge")), st("notify", comp=False)],
)


def succeeded(saga: Saga[Any] = PAYMENT) -> SagaState:
    """``saga`` run to success, step by step in definition order."""
    state = decide(saga, initial_state(saga, "c-1"), SagaStarted(0.0)).state
    for stage in saga.stages:
        for step in stage:
            state = decide(saga, state, StepSucceeded(step.name, None, 1.0)).state
    assert state.status is SagaStatus.SUCCEEDED
    return state


def test_a_rollback_compensates_every_completed_step_in_reverse() -> None:
    state = play(
        PAYMENT,
        [
            (ROLLBACK, (Compensate("charge", 1), Compensate("fee", 1))),
            (CompensationSucceeded("fee", 6.0), ()),
            (CompensationSucceeded("charge", 6.0), (Compensate("hold", 1),)),
            (
                CompensationSucceeded("hold", 7.0),
                (FinishSaga(SagaStatus.COMPENSATED),),
            ),
        ],
        succeeded(),
    )
    assert state.status is SagaStatus.COMPENSATED
    assert state.error == ErrorInfo(ROLLED_BACK, "rolled back by p-1 (step pay)")
    assert state.failed_step is None
    assert {n: s.status for n, s in state.steps.items()} == {
        "hold": StepStatus.COMPENSATED,
        "fee": StepStatus.COMPENSATED,
        "charge": StepStatus.COMPENSATED,
        "notify": StepStatus.SUCCEEDED,
    }


def test_a_rollback_with_nothing_to_compensate_ends_at_once() -> None:
    saga = Saga("note", [st("note", comp=False)])
    play(saga, [(ROLLBACK, (FinishSaga(SagaStatus.COMPENSATED),))], succeeded(saga))


def test_a_failed_rollback_waits_for_a_resume() -> None:
    state = play(
        PAYMENT,
        [
            (ROLLBACK, (Compensate("charge", 1), Compensate("fee", 1))),
            (CompensationAttemptFailed("charge", UNDO, False, 6.0), ()),
            (
                CompensationSucceeded("fee", 6.0),
                (FinishSaga(SagaStatus.COMPENSATION_FAILED),),
            ),
            (ResumeRequested(8.0), (Compensate("charge", 2),)),
            (CompensationSucceeded("charge", 9.0), (Compensate("hold", 1),)),
            (
                CompensationSucceeded("hold", 9.0),
                (FinishSaga(SagaStatus.COMPENSATED),),
            ),
        ],
        succeeded(),
    )
    assert state.status is SagaStatus.COMPENSATED


def test_a_rollback_is_refused_past_the_pivot() -> None:
    saga = Saga("pivoted", [st("hold"), st("capture", comp=False, pivot=True)])
    with pytest.raises(StateError, match="past its pivot 'capture'"):
        decide(saga, succeeded(saga), ROLLBACK)


@pytest.mark.parametrize(
    "status",
    [
        SagaStatus.RUNNING,
        SagaStatus.COMPENSATING,
        SagaStatus.COMPENSATED,
        SagaStatus.FAILED,
        SagaStatus.COMPENSATION_FAILED,
    ],
)
def test_only_a_succeeded_saga_is_rolled_back(status: SagaStatus) -> None:
    state = succeeded().but(status=status)
    with pytest.raises(StateError, match=f"is {status.value}: only a succeeded"):
        decide(PAYMENT, state, ROLLBACK)


def test_the_parent_link_survives_storage_and_every_transition() -> None:
    link = ParentLink("p-1", "pay")
    state = initial_state(PAYMENT, "p-1/pay").but(parent=link)
    assert state.to_dict()["parent"] == {"saga_id": "p-1", "step": "pay"}
    assert "parent" not in initial_state(PAYMENT, "x").to_dict()
    state = decide(PAYMENT, state, SagaStarted(0.0)).state
    state = decide(PAYMENT, state, StepSucceeded("hold", None, 1.0)).state
    assert SagaState.from_dict(state.to_dict()).parent == link


# -- a parent's sub-saga steps ------------------------------------------------------

ORDER = Saga(
    "order",
    [
        st("reserve"),
        Parallel(Step("pay", SubSaga(PAYMENT)), st("pack")),
        st("ship", comp=False),
    ],
)


def running_pay() -> SagaState:
    """The order with pay (a child) and pack running."""
    return play(
        ORDER,
        [
            (SagaStarted(0.0), (RunStep("reserve", 1),)),
            (
                StepSucceeded("reserve", None, 1.0),
                (RunStep("pay", 1), RunStep("pack", 1)),
            ),
        ],
    )


def test_a_child_that_failed_fails_its_step_and_the_parent_rolls_back() -> None:
    failed = StepAttemptFailed("pay", BOOM, False, 2.0)
    state = play(
        ORDER,
        [
            (failed, ()),  # pack still runs
            (StepSucceeded("pack", None, 3.0), (Compensate("pack", 1),)),
            (CompensationSucceeded("pack", 4.0), (Compensate("reserve", 1),)),
            (
                CompensationSucceeded("reserve", 4.0),
                (FinishSaga(SagaStatus.COMPENSATED),),
            ),
        ],
        running_pay(),
    )
    assert state.failed_step == "pay"
    assert state.step("pay").status is StepStatus.FAILED


def test_a_succeeded_child_is_rolled_back_with_its_siblings() -> None:
    state = play(
        ORDER,
        [
            (StepSucceeded("pay", {"charge": 1}, 2.0), ()),
            (StepSucceeded("pack", None, 2.0), (RunStep("ship", 1),)),
            (
                StepAttemptFailed("ship", BOOM, False, 3.0),
                (Compensate("pack", 1), Compensate("pay", 1)),
            ),
            (CompensationSucceeded("pay", 4.0), ()),
            (CompensationSucceeded("pack", 4.0), (Compensate("reserve", 1),)),
        ],
        running_pay(),
    )
    assert state.step("pay").status is StepStatus.COMPENSATED


def test_a_child_running_at_a_restart_is_watched_again() -> None:
    state = running_pay()
    assert decide(ORDER, state, SagaResumed(5.0)).commands == (
        RunStep("pay", 1),
        RunStep("pack", 1),
    )
    # cancelled meanwhile: pack's outcome is unknown, pay's child runs on
    cancelled = decide(ORDER, state, CancelRequested(3.0)).state
    resumed = decide(ORDER, cancelled, SagaResumed(5.0))
    assert resumed.commands == (RunStep("pay", 1),)
    after = resumed.state
    assert after.step("pack").status is StepStatus.FAILED
    assert after.step("pack").error == INTERRUPTED
    assert after.step("pay").status is StepStatus.RUNNING
    # its child succeeded: rolled back, then what came before it
    state = play(
        ORDER,
        [
            (StepSucceeded("pay", None, 6.0), (Compensate("pay", 1),)),
            (CompensationSucceeded("pay", 7.0), (Compensate("reserve", 1),)),
        ],
        after,
    )
    assert state.status is SagaStatus.COMPENSATING


def test_a_paused_parent_holds_the_watch_of_its_child_until_unpaused() -> None:
    paused = decide(ORDER, running_pay(), PauseRequested(2.0)).state
    resumed = decide(ORDER, paused, SagaResumed(4.0))
    assert resumed.commands == ()
    assert resumed.state.held == ("pay", "pack")
    unpaused = decide(ORDER, resumed.state, UnpauseRequested(5.0))
    assert unpaused.commands == (RunStep("pay", 1), RunStep("pack", 1))
