"""An operator's hand on one compensation, and forks, in the engine: retry
one compensation, mark a step compensated, skip a compensation, and the
state a fork starts from; each refused where it would break an invariant."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagakit.definition import Parallel, RetryPolicy, Saga, Step, SubSaga
from sagakit.engine import (
    Compensate,
    CompensationAttemptFailed,
    CompensationRetryRequested,
    CompensationSkipped,
    CompensationSucceeded,
    FinishSaga,
    PauseRequested,
    RunStep,
    SagaForked,
    SagaStarted,
    SagaStatus,
    StepAttemptFailed,
    StepMarkedCompensated,
    StepStatus,
    StepSucceeded,
    UnpauseRequested,
    decide,
    initial_state,
)
from sagakit.engine.decide import Decision
from sagakit.engine.repair import changes, fork_state
from sagakit.engine.state import ErrorInfo, ParentLink, SagaState
from sagakit.errors import StateError
from tests.unit.test_engine_properties import PROPERTY_SETTINGS, Run, sagas, simulate

BOOM = ErrorInfo("Boom", "no")
ONCE = RetryPolicy(attempts=1)


def act(ctx: object) -> None:
    return None


SAGA = Saga(
    "repair",
    [
        Step("a", act, compensate=act, compensation_retry=ONCE),
        Step("b", act, compensate=act, compensation_retry=ONCE),
        Step("c", act),  # nothing to undo
        Step("d", act, retry=ONCE),  # fails: the saga rolls back
        Step("e", act, compensate=act),  # never runs
    ],
)
PIVOTED = Saga(
    "pivoted",
    [
        Step("a", act, compensate=act),
        Step("pivot", act, pivot=True),
        Step("after", act, retry=ONCE),
    ],
)
BRANCHES = Saga(  # x and y are undone together; z fails
    "branches",
    [
        Parallel(
            Step("x", act, compensate=act, compensation_retry=ONCE),
            Step("y", act, compensate=act, compensation_retry=ONCE),
        ),
        Step("z", act, retry=ONCE),
    ],
)


def run(saga: Saga[Any], *events: object, state: SagaState | None = None) -> Decision:
    decision = decide(saga, initial_state(saga, "s1"), SagaStarted(1.0))
    if state is not None:
        decision = Decision(state, ())
    for event in events:
        decision = decide(saga, decision.state, event)  # type: ignore[arg-type]
    return decision


ROLLING_BACK = (
    StepSucceeded("a", "ref-a", 2.0),
    StepSucceeded("b", "ref-b", 3.0),
    StepSucceeded("c", None, 4.0),
    StepAttemptFailed("d", BOOM, True, 5.0),
)
UNDO_B_FAILED = (*ROLLING_BACK, CompensationAttemptFailed("b", BOOM, True, 6.0))


def undo_b_failed() -> SagaState:
    state = run(SAGA, *UNDO_B_FAILED).state
    assert state.status is SagaStatus.COMPENSATION_FAILED
    assert state.compensations == ("b", "a")
    return state


# -- retry one compensation --------------------------------------------------


def test_retry_one_compensation_then_the_rollback_goes_on() -> None:
    retried = decide(SAGA, undo_b_failed(), CompensationRetryRequested("b", 10.0))
    assert retried.commands == (Compensate("b", 2),)
    assert retried.state.status is SagaStatus.COMPENSATING
    assert retried.state.compensation_errors == ()
    assert retried.state.error == BOOM  # the original failure is kept
    assert retried.state.step("b").compensation_retry_base == 1
    d = decide(SAGA, retried.state, CompensationSucceeded("b", 11.0))
    assert d.commands == (Compensate("a", 1),)
    d = decide(SAGA, d.state, CompensationSucceeded("a", 12.0))
    assert d.state.status is SagaStatus.COMPENSATED
    assert SagaState.from_dict(retried.state.to_dict()) == retried.state


def test_retry_one_compensation_fails_again_with_a_fresh_budget() -> None:
    retried = decide(SAGA, undo_b_failed(), CompensationRetryRequested("b", 10.0))
    again = decide(
        SAGA, retried.state, CompensationAttemptFailed("b", BOOM, True, 11.0)
    )
    assert again.state.status is SagaStatus.COMPENSATION_FAILED
    assert again.commands == (FinishSaga(SagaStatus.COMPENSATION_FAILED),)
    assert again.state.compensation_errors == (("b", BOOM),)


def test_retry_of_one_leaves_the_other_failed_compensation_as_it_is() -> None:
    both_failed = run(
        BRANCHES,
        StepSucceeded("x", None, 2.0),
        StepSucceeded("y", None, 2.0),
        StepAttemptFailed("z", BOOM, True, 3.0),
        CompensationAttemptFailed("x", BOOM, True, 4.0),
        CompensationAttemptFailed("y", ErrorInfo("Other", "y"), True, 4.0),
    ).state
    assert both_failed.status is SagaStatus.COMPENSATION_FAILED
    retried = decide(BRANCHES, both_failed, CompensationRetryRequested("x", 9.0))
    assert retried.commands == (Compensate("x", 2),)
    assert retried.state.compensation_errors == (("y", ErrorInfo("Other", "y")),)
    done = decide(BRANCHES, retried.state, CompensationSucceeded("x", 10.0))
    # stop policy: y still failed for good, so the saga ends as it was
    assert done.state.status is SagaStatus.COMPENSATION_FAILED
    assert done.state.step("x").status is StepStatus.COMPENSATED
    assert done.state.step("y").status is StepStatus.COMPENSATION_FAILED


# -- mark compensated, skip ----------------------------------------------------


@pytest.mark.parametrize(
    ("event", "settled"),
    [
        (StepMarkedCompensated("b", 10.0, "refunded by hand"), StepStatus.COMPENSATED),
        (CompensationSkipped("b", 10.0, "keep it"), StepStatus.COMPENSATION_SKIPPED),
    ],
)
def test_settle_a_failed_compensation_by_hand_and_go_on(
    event: StepMarkedCompensated | CompensationSkipped, settled: StepStatus
) -> None:
    d = decide(SAGA, undo_b_failed(), event)
    assert d.commands == (Compensate("a", 1),)  # b is not run again
    assert d.state.status is SagaStatus.COMPENSATING
    assert d.state.step("b").status is settled
    assert d.state.compensations == ("a",)
    assert d.state.compensation_errors == ()
    d = decide(SAGA, d.state, CompensationSucceeded("a", 11.0))
    assert d.state.status is SagaStatus.COMPENSATED
    assert d.commands == (FinishSaga(SagaStatus.COMPENSATED),)
    assert d.state.step("b").status is settled
    assert d.state.results["b"] == "ref-b"  # a skipped step keeps its result
    assert SagaState.from_dict(d.state.to_dict()) == d.state


def test_mark_a_waiting_compensation_while_another_stays_failed() -> None:
    """Under ``stop`` the rollback cannot go on past b's failure: a's
    compensation waits; marking a done ends the saga as it was."""
    d = decide(SAGA, undo_b_failed(), StepMarkedCompensated("a", 10.0, "by hand"))
    assert d.state.status is SagaStatus.COMPENSATION_FAILED
    assert d.commands == (FinishSaga(SagaStatus.COMPENSATION_FAILED),)
    assert d.state.step("a").status is StepStatus.COMPENSATED
    assert d.state.compensations == ("b",)


def test_mark_a_held_compensation_of_a_paused_saga() -> None:
    paused = run(SAGA, *ROLLING_BACK[:3], PauseRequested(4.5, "look first"))
    held = decide(SAGA, paused.state, StepAttemptFailed("d", BOOM, True, 5.0))
    assert held.commands == ()
    assert held.state.held == ("b",)
    marked = decide(SAGA, held.state, StepMarkedCompensated("b", 6.0, "by hand"))
    assert marked.commands == ()  # a's compensation is held in turn
    assert marked.state.held == ("a",)
    assert marked.state.step("b").status is StepStatus.COMPENSATED
    going = decide(SAGA, marked.state, UnpauseRequested(7.0))
    assert going.commands == (Compensate("a", 1),)


def test_retry_one_compensation_of_a_compensating_saga_under_continue() -> None:
    saga = Saga(
        "go-on",
        [
            Step("a", act, compensate=act, compensation_retry=ONCE),
            Step("b", act, compensate=act, compensation_retry=ONCE),
            Step("c", act, retry=ONCE),
        ],
        on_compensation_failure="continue",
    )
    d = run(
        saga,
        StepSucceeded("a", None, 2.0),
        StepSucceeded("b", None, 3.0),
        StepAttemptFailed("c", BOOM, True, 4.0),
        CompensationAttemptFailed("b", BOOM, True, 5.0),
    )
    assert d.state.status is SagaStatus.COMPENSATING  # a is being undone
    assert d.commands == (Compensate("a", 1),)
    retried = decide(saga, d.state, CompensationRetryRequested("b", 6.0))
    assert retried.commands == (Compensate("b", 2),)
    d = decide(saga, retried.state, CompensationSucceeded("a", 7.0))
    assert d.commands == ()
    d = decide(saga, d.state, CompensationSucceeded("b", 8.0))
    assert d.state.status is SagaStatus.COMPENSATED


def _refused(event: object, *, state: SagaState | None = None, saga: Any = SAGA) -> str:
    with pytest.raises(StateError) as caught:
        decide(saga, state if state is not None else undo_b_failed(), event)  # type: ignore[arg-type]
    return str(caught.value)


@pytest.mark.parametrize(
    ("events", "event", "message"),
    [
        ((), StepMarkedCompensated("a", 9.0, "r"), "s1 is running: only a"),
        ((), CompensationSkipped("a", 9.0, "r"), "compensations to skip"),
        (UNDO_B_FAILED, CompensationRetryRequested("zz", 9.0), "has no step 'zz'"),
        (UNDO_B_FAILED, StepMarkedCompensated("c", 9.0, "r"), "'c' has no compens"),
        (UNDO_B_FAILED, CompensationRetryRequested("a", 9.0), "has not failed"),
        (UNDO_B_FAILED, CompensationSkipped("e", 9.0, "r"), "did not complete"),
        (
            (*ROLLING_BACK, CompensationSucceeded("b", 6.0)),
            CompensationSkipped("b", 9.0, "r"),
            "succeeded already",
        ),
        (ROLLING_BACK, StepMarkedCompensated("b", 9.0, "r"), "running (attempt 1)"),
        (ROLLING_BACK, CompensationRetryRequested("b", 9.0), "has not failed"),
        (
            (
                *ROLLING_BACK,
                CompensationSucceeded("b", 6.0),
                CompensationSucceeded("a", 7.0),
            ),
            StepMarkedCompensated("a", 9.0, "r"),
            "is compensated: only a compensating",
        ),
    ],
)
def test_refusals(events: tuple[object, ...], event: object, message: str) -> None:
    state = run(SAGA, *events).state
    assert message in _refused(event, state=state)


def test_past_the_pivot_nothing_is_compensated() -> None:
    failed = run(
        PIVOTED,
        StepSucceeded("a", None, 2.0),
        StepSucceeded("pivot", None, 3.0),
        StepAttemptFailed("after", BOOM, True, 4.0),
    ).state
    assert failed.status is SagaStatus.FAILED
    for event in (
        CompensationRetryRequested("a", 9.0),
        StepMarkedCompensated("a", 9.0, "r"),
        CompensationSkipped("a", 9.0, "r"),
    ):
        assert "past its pivot" in _refused(event, state=failed, saga=PIVOTED)


def test_a_skipped_compensation_is_not_skipped_twice() -> None:
    d = decide(SAGA, undo_b_failed(), CompensationSkipped("b", 10.0, "keep"))
    assert "skipped already" in _refused(
        CompensationSkipped("b", 11.0, "again"), state=d.state
    )


# -- forks ---------------------------------------------------------------------


def test_fork_a_failed_saga_from_the_step_that_failed() -> None:
    failed = run(
        PIVOTED,
        StepSucceeded("a", "ref-a", 2.0),
        StepSucceeded("pivot", {"paid": 3}, 3.0),
        StepAttemptFailed("after", BOOM, True, 4.0),
    ).state
    fork = fork_state(PIVOTED, failed, "after", "f1")
    assert fork.saga_id == "f1"
    assert fork.status is SagaStatus.RUNNING
    assert fork.results == {"a": "ref-a", "pivot": {"paid": 3}}
    assert fork.completed == ("a", "pivot")
    assert fork.step("after").status is StepStatus.PENDING
    started = decide(PIVOTED, fork, SagaForked(5.0))
    assert started.commands == (RunStep("after", 1),)
    assert started.state.step("after").status is StepStatus.RUNNING
    # a fork whose first run fails past the kept pivot ends failed
    d = decide(PIVOTED, started.state, StepAttemptFailed("after", BOOM, True, 6.0))
    assert d.state.status is SagaStatus.FAILED


def test_fork_from_the_first_step_keeps_nothing() -> None:
    failed = run(SAGA, *UNDO_B_FAILED).state
    fork = fork_state(SAGA, failed, "a", "f2")
    assert fork.results == {}
    assert decide(SAGA, fork, SagaForked(5.0)).commands == (RunStep("a", 1),)


def test_fork_reuses_a_skipped_step_but_not_an_undone_one() -> None:
    skipped = decide(SAGA, undo_b_failed(), CompensationSkipped("b", 10.0, "keep"))
    undone = decide(SAGA, skipped.state, CompensationSucceeded("a", 11.0)).state
    assert undone.status is SagaStatus.COMPENSATED
    with pytest.raises(StateError, match=r"'a' is compensated .*effect was undone"):
        fork_state(SAGA, undone, "c", "f3")
    assert "is running (attempt 1)" in _refused(
        CompensationSkipped("a", 11.0, "keep"), state=skipped.state
    )
    a_failed = decide(
        SAGA, skipped.state, CompensationAttemptFailed("a", BOOM, True, 11.0)
    )
    kept = decide(SAGA, a_failed.state, CompensationSkipped("a", 12.0, "keep")).state
    assert kept.status is SagaStatus.COMPENSATED
    fork = fork_state(SAGA, kept, "c", "f3")
    assert fork.results == {"a": "ref-a", "b": "ref-b"}
    assert decide(SAGA, fork, SagaForked(12.0)).commands == (RunStep("c", 1),)


def test_fork_a_dag_re_runs_the_steps_not_before_the_chosen_one() -> None:
    saga = Saga(
        "dag",
        [
            Step("root", act),
            Step("left", act, after=("root",)),
            Step("right", act, after=("root",)),
            Step("join", act, after=("left", "right"), retry=ONCE),
        ],
    )
    failed = run(
        saga,
        StepSucceeded("root", 1, 2.0),
        StepSucceeded("left", 2, 3.0),
        StepSucceeded("right", 3, 3.0),
        StepAttemptFailed("join", BOOM, True, 4.0),
    ).state
    fork = fork_state(saga, failed, "left", "f4")
    assert fork.results == {"root": 1}
    started = decide(saga, fork, SagaForked(5.0))
    assert started.commands == (RunStep("left", 1), RunStep("right", 1))


@pytest.mark.parametrize(
    ("events", "step", "message"),
    [
        ((), "b", "s1 is running: only a saga that ended can be forked"),
        (UNDO_B_FAILED, "nope", "has no step 'nope'"),
        (UNDO_B_FAILED, "c", "'a' still waits for its compensation"),
        (UNDO_B_FAILED, "d", "'a' still waits for its compensation"),
    ],
)
def test_fork_refusals(events: tuple[object, ...], step: str, message: str) -> None:
    state = run(SAGA, *events).state
    with pytest.raises(StateError, match=message):
        fork_state(SAGA, state, step, "f5")


def test_a_sub_saga_is_not_forked_nor_a_step_that_ran_one() -> None:
    child = Saga("child", [Step("c1", act)])
    parent = Saga(
        "parent", [Step("sub", SubSaga(child)), Step("next", act, retry=ONCE)]
    )
    ended = run(
        parent,
        StepSucceeded("sub", {"c1": None}, 2.0),
        StepAttemptFailed("next", BOOM, True, 3.0),
        CompensationSucceeded("sub", 4.0),
    ).state
    assert ended.status is SagaStatus.COMPENSATED
    with pytest.raises(StateError, match="ran the sub-saga s1/sub"):
        fork_state(parent, ended, "next", "f6")
    as_child = ended.but(parent=ParentLink("p1", "sub"))
    with pytest.raises(StateError, match="is a sub-saga of p1"):
        fork_state(parent, as_child, "sub", "f6")


def test_changes_name_what_moved() -> None:
    before = undo_b_failed()
    after = decide(SAGA, before, CompensationRetryRequested("b", 10.0)).state
    assert changes(before, after) == [
        "status compensation_failed -> compensating",
        "step b compensation_failed -> compensating",
    ]
    paused = decide(SAGA, initial_state(SAGA, "s2"), PauseRequested(1.0, "x")).state
    assert changes(initial_state(SAGA, "s2"), paused) == ["paused"]


# -- random rollbacks an operator repairs ----------------------------------------


class RepairRun(Run):
    """The property tests' simulator, with an operator who, when a rollback
    ends ``compensation_failed``, retries one compensation, marks a step
    compensated or skips its compensation (the compensations marked or
    skipped count as settled: none of them may run afterwards)."""

    repairs: int = 0

    def go_on(self, data: st.DataObject) -> bool:
        state = self.state
        if state.status is not SagaStatus.COMPENSATION_FAILED or self.repairs >= 3:
            return super().go_on(data)
        listed = state.compensations or ()
        step = data.draw(st.sampled_from(listed))
        failed = state.step(step).status is StepStatus.COMPENSATION_FAILED
        kinds = ["mark", "skip", *(["retry"] if failed else [])]
        kind = data.draw(st.sampled_from(kinds))
        at = float(len(self.events))
        self.repairs += 1
        if step in self.compensation_failed:
            self.compensation_failed.remove(step)
        if kind == "retry":
            self.feed(CompensationRetryRequested(step, at))
            return True
        self.compensated.append(step)  # settled: never compensated again
        event = StepMarkedCompensated(step, at, "r")
        self.feed(event if kind == "mark" else CompensationSkipped(step, at, "r"))
        return True


@PROPERTY_SETTINGS
@given(saga=sagas, data=st.data())
def test_repaired_rollbacks_keep_the_engine_guarantees(
    saga: Saga[Any], data: st.DataObject
) -> None:
    """Whatever an operator does to the compensations of a rollback that
    failed, every transition keeps the engine's guarantees (compensations
    in reverse dependency order, only for completed steps, none past the
    pivot, none twice), and the saga ends compensated once each
    compensation succeeded, was marked done or skipped."""
    run = simulate(saga, data, RepairRun)
    final = run.state
    assert final.status.terminal
    assert len(run.compensated) == len(set(run.compensated))
    to_undo = run.to_undo()
    if final.status is SagaStatus.COMPENSATED:
        assert set(run.compensated) == to_undo
        assert final.compensation_errors == ()
    elif final.status is SagaStatus.COMPENSATION_FAILED:
        failed = {s for s, _ in final.compensation_errors}
        assert failed == set(run.compensation_failed)
        assert set(final.compensations or ()) == to_undo - set(run.compensated)
    for name in to_undo - set(run.compensated):
        assert final.step(name).status is not StepStatus.COMPENSATION_SKIPPED
