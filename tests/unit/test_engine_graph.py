"""decide on graphs: dependencies, concurrent compensations, fail-fast groups,
rollback policies, recovery, and states written by the stage engine."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sagakit import Parallel, RetryPolicy, Saga, Step
from sagakit.definition import Remote
from sagakit.engine import (
    CancelSteps,
    Command,
    Compensate,
    CompensationAttemptFailed,
    CompensationSucceeded,
    Decision,
    ErrorInfo,
    Event,
    FinishSaga,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
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
from sagakit.engine.state import INTERRUPTED
from sagakit.runtime.result import SagaResult

BOOM = ErrorInfo("Boom", "step exploded")
UNDO = ErrorInfo("UndoFailed", "no")
ONCE = RetryPolicy(attempts=1)


def act(ctx: Any) -> None:
    return None


def undo(ctx: Any) -> None:
    return None


def st(name: str, *, comp: bool = True, **kw: Any) -> Step:
    return Step(name, act, undo if comp else None, compensation_retry=ONCE, **kw)


def ok(step: str) -> StepSucceeded:
    return StepSucceeded(step, None, 1.0)


def fail(step: str) -> StepAttemptFailed:
    return StepAttemptFailed(step, BOOM, False, 1.0)


def cok(step: str) -> CompensationSucceeded:
    return CompensationSucceeded(step, 2.0)


def cfail(step: str) -> CompensationAttemptFailed:
    return CompensationAttemptFailed(step, UNDO, False, 2.0)


def play(saga: Saga[Any], script: list[tuple[Event, tuple[Command, ...]]]) -> SagaState:
    """Feed each event, checking the commands it gives; the final state."""
    state = initial_state(saga, "g-1")
    for index, (event, expected) in enumerate(script):
        decision = decide(saga, state, event)
        assert decision.commands == expected, f"after event #{index}: {event}"
        state = decision.state
        assert SagaState.from_dict(state.to_dict()) == state
    return state


def diamond(**options: Any) -> Saga[Any]:
    """reserve -> (pack | pay) -> ship; label hangs off reserve alone."""
    return Saga(
        "diamond",
        [
            st("reserve"),
            st("pack", after=("reserve",)),
            st("pay", after=("reserve",)),
            st("label", after=("reserve",)),
            st("ship", after=("pack", "pay")),
        ],
        **options,
    )


SHIP_FAILS: list[tuple[Event, tuple[Command, ...]]] = [
    (SagaStarted(0.0), (RunStep("reserve", 1),)),
    (ok("reserve"), (RunStep("pack", 1), RunStep("pay", 1), RunStep("label", 1))),
    (ok("pack"), ()),
    (ok("pay"), (RunStep("ship", 1),)),
    (ok("label"), ()),
    # pack, pay and label are independent: undone together
    (
        fail("ship"),
        (Compensate("label", 1), Compensate("pay", 1), Compensate("pack", 1)),
    ),
]
"""The diamond runs to ship, which fails."""


def test_a_step_starts_as_soon_as_its_dependencies_succeeded() -> None:
    state = play(
        diamond(),
        [
            (SagaStarted(0.0), (RunStep("reserve", 1),)),
            (
                ok("reserve"),
                (RunStep("pack", 1), RunStep("pay", 1), RunStep("label", 1)),
            ),
            (ok("pay"), ()),
            (ok("pack"), (RunStep("ship", 1),)),  # label still runs
            (ok("ship"), ()),
            (ok("label"), (FinishSaga(SagaStatus.SUCCEEDED),)),
        ],
    )
    assert state.status is SagaStatus.SUCCEEDED
    assert state.completed == ("reserve", "pay", "pack", "ship", "label")
    assert state.stage == len(diamond().stages)


def test_roots_start_together_and_a_failed_branch_stops_new_starts() -> None:
    saga = Saga("roots", [st("a"), st("b", after=()), st("c", after=("a",))])
    state = play(
        saga,
        [
            (SagaStarted(0.0), (RunStep("a", 1), RunStep("b", 1))),
            (ok("a"), (RunStep("c", 1),)),
            (fail("b"), ()),  # c is in flight: wait for it
            (ok("c"), (Compensate("c", 1),)),  # a waits for c
            (cok("c"), (Compensate("a", 1),)),
            (cok("a"), (FinishSaga(SagaStatus.COMPENSATED),)),
        ],
    )
    assert state.failed_step == "b"


def test_branches_are_compensated_concurrently_in_reverse_dependency_order() -> None:
    play(
        diamond(),
        [
            *SHIP_FAILS,
            (cok("pay"), ()),
            (cok("label"), ()),
            (cok("pack"), (Compensate("reserve", 1),)),  # the last one downstream
            (cok("reserve"), (FinishSaga(SagaStatus.COMPENSATED),)),
        ],
    )


def test_a_step_without_compensation_still_orders_those_around_it() -> None:
    saga = Saga(
        "chain",
        [st("a"), st("b", comp=False, after=("a",)), st("c", after=("b",)), st("x")],
    )
    play(
        saga,
        [
            (SagaStarted(0.0), (RunStep("a", 1),)),
            (ok("a"), (RunStep("b", 1),)),
            (ok("b"), (RunStep("c", 1),)),
            (ok("c"), (RunStep("x", 1),)),
            (fail("x"), (Compensate("c", 1),)),
            (cok("c"), (Compensate("a", 1),)),  # a waits for c, through b
            (cok("a"), (FinishSaga(SagaStatus.COMPENSATED),)),
        ],
    )


def test_stop_policy_lets_concurrent_compensations_settle_then_stops() -> None:
    state = play(
        diamond(),
        [
            *SHIP_FAILS,
            (cfail("pay"), ()),  # pack and label are still running
            (cok("pack"), ()),
            (cfail("label"), (FinishSaga(SagaStatus.COMPENSATION_FAILED),)),
        ],
    )
    assert state.compensation_step == "pay"
    assert state.compensation_error == UNDO
    assert state.compensation_errors == (("pay", UNDO), ("label", UNDO))
    assert state.compensations == ("label", "pay", "reserve")
    assert state.step("reserve").status is StepStatus.SUCCEEDED  # never started


def test_continue_policy_attempts_every_compensation() -> None:
    saga = diamond(on_compensation_failure="continue")
    state = play(
        saga,
        [
            *SHIP_FAILS,
            (cfail("pay"), ()),
            (cok("label"), ()),
            # a failed compensation counts as settled: reserve goes on
            (cok("pack"), (Compensate("reserve", 1),)),
            (cfail("reserve"), (FinishSaga(SagaStatus.COMPENSATION_FAILED),)),
        ],
    )
    assert state.compensation_errors == (("pay", UNDO), ("reserve", UNDO))
    assert state.error == BOOM
    assert state.compensations == ("pay", "reserve")
    # resume retries what did not succeed, downstream first, with fresh budgets
    resumed = decide(saga, state, ResumeRequested(3.0))
    assert resumed.commands == (Compensate("pay", 2),)
    assert resumed.state.compensation_errors == ()
    assert resumed.state.step("reserve").status is StepStatus.SUCCEEDED
    assert resumed.state.step("pay").compensation_retry_base == 1
    d = decide(saga, resumed.state, CompensationSucceeded("pay", 4.0))
    assert d.commands == (Compensate("reserve", 2),)
    d = decide(saga, d.state, CompensationSucceeded("reserve", 5.0))
    assert d.commands == (FinishSaga(SagaStatus.COMPENSATED),)
    result = SagaResult.from_state(d.state, None, saga=saga)  # type: ignore[arg-type]
    assert result.compensation_errors == ()


def test_a_compensate_on_failure_step_is_undone_with_the_others() -> None:
    saga = Saga(
        "cof",
        [st("a"), Parallel(st("b"), st("c", compensate_on_failure=True))],
    )
    play(
        saga,
        [
            (SagaStarted(0.0), (RunStep("a", 1),)),
            (ok("a"), (RunStep("b", 1), RunStep("c", 1))),
            (fail("c"), ()),
            (ok("b"), (Compensate("b", 1), Compensate("c", 1))),
            (cok("c"), ()),
            (cok("b"), (Compensate("a", 1),)),
            (cok("a"), (FinishSaga(SagaStatus.COMPENSATED),)),
        ],
    )


def test_fail_fast_cancels_the_running_siblings_once() -> None:
    saga = Saga(
        "ff",
        [
            st("a"),
            Parallel(
                st("b"),
                st("c"),
                st("d", compensate_on_failure=True),
                st("e"),
                on_failure="fail_fast",
                grace=2.5,
            ),
        ],
    )
    state = play(
        saga,
        [
            (SagaStarted(0.0), (RunStep("a", 1),)),
            (
                ok("a"),
                (RunStep("b", 1), RunStep("c", 1), RunStep("d", 1), RunStep("e", 1)),
            ),
            (ok("e"), ()),
            (fail("b"), (CancelSteps(("c", "d"), 2.5),)),
            # a cancelled sibling is a failed attempt: no second cancel
            (StepAttemptFailed("c", ErrorInfo("Cancelled", "x"), False, 1.0), ()),
            (
                StepAttemptFailed("d", ErrorInfo("Cancelled", "x"), False, 1.0),
                (Compensate("d", 1), Compensate("e", 1)),
            ),
            (cok("d"), ()),
            (cok("e"), (Compensate("a", 1),)),
            (cok("a"), (FinishSaga(SagaStatus.COMPENSATED),)),
        ],
    )
    assert state.failed_step == "b"
    assert state.step("c").status is StepStatus.FAILED


def test_fail_fast_does_not_cancel_remote_siblings_and_wait_all_cancels_none() -> None:
    remote = Step("r", Remote("svc.do", queue="svc"), undo)
    fast = Saga("ff", [Parallel(st("b"), remote, st("c"), on_failure="fail_fast")])
    d = decide(fast, initial_state(fast, "g"), SagaStarted(0.0))
    d = decide(fast, d.state, fail("b"))
    assert d.commands == (CancelSteps(("c",), 0.0),)
    slow = Saga("wa", [Parallel(st("b"), st("c"))])
    d = decide(slow, initial_state(slow, "g"), SagaStarted(0.0))
    assert decide(slow, d.state, fail("b")).commands == ()


def test_fail_fast_takes_back_the_runs_a_pause_held() -> None:
    saga = Saga(
        "ff",
        [
            st("a"),
            Parallel(
                st("b"),
                st("c", retry=RetryPolicy(attempts=3), compensate_on_failure=True),
                st("d"),
                on_failure="fail_fast",
            ),
        ],
    )
    d = decide(saga, initial_state(saga, "g"), SagaStarted(0.0))
    d = decide(saga, d.state, PauseRequested(0.5))
    d = decide(saga, d.state, ok("a"))  # b, c and d held
    assert d.state.held == ("b", "c", "d")
    d = decide(saga, d.state, UnpauseRequested(0.6))
    d = decide(saga, d.state, PauseRequested(0.7))
    d = decide(saga, d.state, StepAttemptFailed("c", BOOM, True, 1.0))  # retry held
    assert d.state.held == ("c",)
    d = decide(saga, d.state, fail("b"))
    # c's retry was never sent: it failed with its last error, and is undone
    assert d.commands == (CancelSteps(("d",), 0.0),)
    assert d.state.held == ()
    assert d.state.step("c").status is StepStatus.FAILED
    assert d.state.step("c").attempts == 1
    assert "c" in d.state.completed
    d = decide(saga, d.state, ok("d"))
    assert d.commands == ()  # paused: d and c's compensations are held
    d = decide(saga, d.state, UnpauseRequested(2.0))
    assert d.commands == (Compensate("d", 1), Compensate("c", 1))


def test_a_held_first_run_is_taken_back_to_pending() -> None:
    saga = Saga("ff", [st("a"), Parallel(st("b"), st("c"), on_failure="fail_fast")])
    d = decide(saga, initial_state(saga, "g"), SagaStarted(0.0))
    d = decide(saga, d.state, ok("a"))
    paused = decide(saga, d.state, PauseRequested(1.0)).state
    held = replace(
        paused.with_step("c", deadline=None), held=("c",)
    )  # as if c's run had been held
    d = decide(saga, held, fail("b"))
    assert d.state.step("c").status is StepStatus.PENDING
    assert d.state.step("c").attempts == 0
    assert d.commands == ()  # paused: a's compensation is held
    d = decide(saga, d.state, UnpauseRequested(2.0))
    assert d.commands == (Compensate("a", 1),)


def test_past_the_pivot_a_failed_branch_ends_failed_and_retry_restarts_it() -> None:
    saga = Saga(
        "pv",
        [
            st("a"),
            Step("p", act, pivot=True),
            Step("x", act, after=("p",)),
            Step("y", act, after=("p",)),
            Step("z", act, after=("y",)),
        ],
    )
    state = play(
        saga,
        [
            (SagaStarted(0.0), (RunStep("a", 1),)),
            (ok("a"), (RunStep("p", 1),)),
            (ok("p"), (RunStep("x", 1), RunStep("y", 1))),
            (fail("x"), ()),
            (ok("y"), (FinishSaga(SagaStatus.FAILED),)),  # z does not start
        ],
    )
    result = SagaResult.from_state(state, None, saga=saga)  # type: ignore[arg-type]
    assert result.pivot_reached
    assert result.committed_past_pivot == ("y",)
    retried = decide(saga, state, RetryRequested(3.0))
    assert retried.commands == (RunStep("x", 2), RunStep("z", 1))
    d = decide(saga, retried.state, StepSucceeded("x", None, 4.0))
    d = decide(saga, d.state, ok("z"))
    assert d.commands == (FinishSaga(SagaStatus.SUCCEEDED),)


def test_resumed_while_compensating_reruns_every_local_compensation_in_flight() -> None:
    saga = diamond()
    d = decide(saga, initial_state(saga, "g"), SagaStarted(0.0))
    for event in (ok("reserve"), ok("pack"), ok("pay"), ok("label"), fail("ship")):
        d = decide(saga, d.state, event)
    d = decide(saga, d.state, cok("pay"))
    resumed = decide(saga, d.state, SagaResumed(5.0))
    assert resumed.commands == (Compensate("label", 1), Compensate("pack", 1))
    assert resumed.state == d.state


def test_resumed_while_failing_marks_local_steps_interrupted() -> None:
    saga = diamond()
    d = decide(saga, initial_state(saga, "g"), SagaStarted(0.0))
    d = decide(saga, d.state, ok("reserve"))
    d = decide(saga, d.state, fail("pack"))  # pay and label in flight
    resumed = decide(saga, d.state, SagaResumed(5.0))
    assert resumed.state.step("pay").error == INTERRUPTED
    assert resumed.commands == (Compensate("reserve", 1),)


def test_a_state_written_by_the_stage_engine_goes_on() -> None:
    """Stored by the stage engine: the head of the queue compensating, its
    siblings after it; now they are undone together."""
    saga = Saga("order", [st("a"), Parallel(st("b"), st("c"), st("d")), st("e")])
    stored = {
        "saga_id": "old-1",
        "saga_name": "order",
        "status": "compensating",
        "stage": 2,
        "steps": {
            "a": {"status": "succeeded", "attempts": 1},
            "b": {"status": "compensated", "attempts": 1, "compensation_attempts": 1},
            "c": {"status": "compensating", "attempts": 1, "compensation_attempts": 1},
            "d": {"status": "succeeded", "attempts": 1},
            "e": {"status": "failed", "attempts": 1, "error": BOOM.to_dict()},
        },
        "completed": ["a", "d", "c", "b"],
        "compensations": ["c", "d", "a"],
        "failed_step": "e",
        "error": BOOM.to_dict(),
        "compensation_step": None,
        "compensation_error": None,
    }
    state = SagaState.from_dict(stored)
    assert state.to_dict() == stored
    resumed = decide(saga, state, SagaResumed(1.0))
    assert resumed.commands == (Compensate("c", 1), Compensate("d", 1))
    d = decide(saga, resumed.state, cok("d"))
    d = decide(saga, d.state, cok("c"))
    assert d.commands == (Compensate("a", 1),)


def test_a_compensation_failed_state_of_the_stage_engine_resumes() -> None:
    saga = Saga("order", [st("a"), st("b"), st("c")])
    stored = {
        "saga_id": "old-2",
        "saga_name": "order",
        "status": "compensation_failed",
        "stage": 2,
        "steps": {
            "a": {"status": "succeeded", "attempts": 1},
            "b": {
                "status": "compensation_failed",
                "attempts": 1,
                "compensation_attempts": 3,
            },
            "c": {"status": "failed", "attempts": 1, "error": BOOM.to_dict()},
        },
        "completed": ["a", "b"],
        "compensations": ["b", "a"],
        "failed_step": "c",
        "error": BOOM.to_dict(),
        "compensation_step": "b",
        "compensation_error": UNDO.to_dict(),
    }
    state = SagaState.from_dict(stored)
    assert state.compensation_errors == (("b", UNDO),)
    d = decide(saga, state, ResumeRequested(1.0))
    assert d.commands == (Compensate("b", 4),)
    assert d.state.step("b").compensation_retry_base == 3


@pytest.mark.parametrize("policy", ["stop", "continue"])
def test_a_later_compensation_error_is_stored_only_when_there_is_one(
    policy: str,
) -> None:
    saga = Saga(
        "two",
        [Parallel(st("a"), st("b")), st("c")],
        on_compensation_failure=policy,  # type: ignore[arg-type]
    )
    d: Decision = decide(saga, initial_state(saga, "g"), SagaStarted(0.0))
    for event in (ok("a"), ok("b"), fail("c"), cfail("b")):
        d = decide(saga, d.state, event)
    assert "later_compensation_errors" not in d.state.to_dict()
    d = decide(saga, d.state, cfail("a"))
    assert d.state.to_dict()["later_compensation_errors"] == [
        {"step": "a", "error": UNDO.to_dict()}
    ]
    assert d.state.status is SagaStatus.COMPENSATION_FAILED
