"""Poison sagas in the engine: each takeover that runs again a local step
left in flight counts a crash on it; at ``max_crashes`` the saga parks
itself (paused, with the reason) instead, and an unpause runs it again."""

from __future__ import annotations

from sagakit.definition import Remote, Saga, Step
from sagakit.engine import (
    Compensate,
    PauseRequested,
    RunStep,
    SagaResumed,
    SagaStarted,
    SagaState,
    StepAttemptFailed,
    StepSucceeded,
    UnpauseRequested,
)
from sagakit.engine.state import ErrorInfo
from tests.unit.test_engine_pause import run


def act(ctx: object) -> None:
    return None


SAGA = Saga("p", [Step("a", act, compensate=act), Step("b", act)])
REMOTE = Saga("r", [Step("a", Remote("svc.a", lambda c: c, queue="q"))])


def test_each_takeover_of_a_local_step_in_flight_counts_a_crash() -> None:
    first = run(SAGA, SagaStarted(0), SagaResumed(1, 3))
    assert first.commands == (RunStep("a", 1),)
    assert first.state.step("a").crashes == 1
    assert not first.state.paused
    second = run(SAGA, SagaResumed(2, 3), state=first.state)
    assert second.commands == (RunStep("a", 1),)
    assert second.state.step("a").crashes == 2


def test_the_nth_takeover_parks_the_saga_and_a_restart_leaves_it() -> None:
    parked = run(SAGA, SagaStarted(0), *(SagaResumed(t, 2) for t in (1, 2)))
    assert parked.commands == ()
    assert parked.state.paused
    assert parked.state.held == ("a",)
    assert parked.state.parked is not None
    assert "'a'" in parked.state.parked
    again = run(SAGA, SagaResumed(3, 2), state=parked.state)
    assert again.commands == ()
    assert again.state.paused
    assert again.state.step("a").crashes == 2  # nothing ran: nothing counted
    assert SagaState.from_dict(again.state.to_dict()) == again.state


def test_an_unpause_runs_it_again_with_its_budget_back() -> None:
    parked = run(SAGA, SagaStarted(0), *(SagaResumed(t, 2) for t in (1, 2)))
    going = run(SAGA, UnpauseRequested(3), state=parked.state)
    assert going.commands == (RunStep("a", 1),)
    assert not going.state.paused
    assert going.state.parked is None
    assert going.state.step("a").crashes == 0


def test_a_finished_step_and_new_steps_count_nothing() -> None:
    done_a = run(SAGA, SagaStarted(0), StepSucceeded("a", None, 1))
    assert done_a.commands == (RunStep("b", 1),)
    resumed = run(SAGA, SagaResumed(2, 1), state=done_a.state)
    # b was in flight: with max_crashes=1 the first takeover parks it
    assert resumed.state.paused
    assert resumed.state.step("a").crashes == 0


def test_a_local_compensation_in_flight_counts_too() -> None:
    failing = run(
        SAGA,
        SagaStarted(0),
        StepSucceeded("a", None, 1),
        StepAttemptFailed("b", ErrorInfo("Boom", "no"), False, 2),
    )
    assert failing.commands == (Compensate("a", 1),)
    once = run(SAGA, SagaResumed(3, 2), state=failing.state)
    assert once.commands == (Compensate("a", 1),)
    parked = run(SAGA, SagaResumed(4, 2), state=once.state)
    assert parked.commands == ()
    assert parked.state.paused
    assert parked.state.held == ("a",)


def test_remote_steps_and_unlimited_takeovers_never_park() -> None:
    remote = run(REMOTE, SagaStarted(0), *(SagaResumed(t, 1) for t in (1, 2)))
    assert not remote.state.paused
    assert remote.state.step("a").crashes == 0
    local = run(SAGA, SagaStarted(0), *(SagaResumed(t) for t in range(1, 9)))
    assert not local.state.paused
    assert local.state.step("a").crashes == 0


def test_an_operator_pause_is_not_a_park() -> None:
    paused = run(SAGA, SagaStarted(0), PauseRequested(1), SagaResumed(2, 1))
    assert paused.state.paused
    assert paused.state.parked is None
