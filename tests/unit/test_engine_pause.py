"""Pausing in the engine: outcomes are recorded, nothing new starts, and
unpausing issues exactly what the pause held back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sagakit.definition import Parallel, Remote, RetryPolicy, Saga, Step
from sagakit.engine import (
    CancelRequested,
    Command,
    Compensate,
    CompensationAttemptFailed,
    CompensationSucceeded,
    DeadlinePassed,
    FinishSaga,
    PauseRequested,
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
from sagakit.engine.decide import Decision
from sagakit.engine.state import ErrorInfo
from sagakit.errors import StateError

BOOM = ErrorInfo("Boom", "no")
NO_WAIT = RetryPolicy(attempts=2, backoff=0, jitter=0)


def act(ctx: object) -> None:
    return None


SAGA = Saga(
    "pause",
    [
        Step("a", act, compensate=act),
        Step("b", act, compensate=act, retry=NO_WAIT),
        Step("c", act),
    ],
)


def run(saga: Saga[Any], *events: object, state: SagaState | None = None) -> Decision:
    decision = Decision(state or initial_state(saga, "s1"), ())
    for event in events:
        decision = decide(saga, decision.state, event)  # type: ignore[arg-type]
    return decision


def test_a_step_in_flight_is_recorded_but_the_next_does_not_start() -> None:
    d = run(SAGA, SagaStarted(0), StepSucceeded("a", 1, 1), PauseRequested(2))
    assert d.state.paused
    assert d.commands == ()
    d = run(SAGA, StepSucceeded("b", 2, 3), state=d.state)
    assert d.state.step("b").status is StepStatus.SUCCEEDED
    assert d.commands == ()
    assert d.state.held == ("c",)
    d = run(SAGA, UnpauseRequested(4), state=d.state)
    assert d.commands == (RunStep("c", 1),)
    assert not d.state.paused
    assert d.state.held == ()
    d = run(SAGA, StepSucceeded("c", 3, 5), state=d.state)
    assert d.state.status is SagaStatus.SUCCEEDED


def test_unpausing_with_nothing_held_issues_nothing() -> None:
    d = run(SAGA, SagaStarted(0), PauseRequested(1), UnpauseRequested(2))
    assert d.commands == ()
    assert not d.state.paused
    assert d.state.step("a").status is StepStatus.RUNNING  # still in flight


def paused_when_b_fails(*, retryable: bool) -> Decision:
    started = (SagaStarted(0), StepSucceeded("a", 1, 1), PauseRequested(2))
    return run(SAGA, *started, StepAttemptFailed("b", BOOM, retryable, 3))


def test_a_retry_is_held_and_issued_on_unpause() -> None:
    d = paused_when_b_fails(retryable=True)
    assert d.commands == ()
    assert d.state.held == ("b",)
    assert run(SAGA, UnpauseRequested(4), state=d.state).commands == (RunStep("b", 2),)


def test_a_compensating_saga_holds_its_next_compensation() -> None:
    d = paused_when_b_fails(retryable=False)
    assert d.state.status is SagaStatus.COMPENSATING
    assert d.commands == ()
    assert d.state.held == ("a",)
    d = run(SAGA, UnpauseRequested(4), state=d.state)
    assert d.commands == (Compensate("a", 1),)
    d = run(SAGA, PauseRequested(5), CompensationSucceeded("a", 6), state=d.state)
    assert d.state.status is SagaStatus.COMPENSATED
    assert d.commands == (FinishSaga(SagaStatus.COMPENSATED),)
    assert not d.state.paused  # an ended saga is not paused


def undo_a_fails_while_paused(saga: Saga[Any], *, retryable: bool) -> Decision:
    """b fails for good at 2, the saga is paused at 3, undoing a fails at 4."""
    return run(
        saga,
        SagaStarted(0),
        StepSucceeded("a", 1, 1),
        StepAttemptFailed("b", BOOM, False, 2),
        PauseRequested(3),
        CompensationAttemptFailed("a", BOOM, retryable, 4),
    )


def test_a_failed_compensation_ends_a_paused_saga() -> None:
    d = undo_a_fails_while_paused(SAGA, retryable=False)
    assert d.state.status is SagaStatus.COMPENSATION_FAILED
    assert d.commands == (FinishSaga(SagaStatus.COMPENSATION_FAILED),)


def test_a_parallel_stage_is_held_whole() -> None:
    saga = Saga("par", [Step("a", act), Parallel(Step("x", act), Step("y", act))])
    d = run(saga, SagaStarted(0), PauseRequested(1), StepSucceeded("a", 1, 2))
    assert d.commands == ()
    assert d.state.held == ("x", "y")
    d = run(saga, UnpauseRequested(3), state=d.state)
    assert d.commands == (RunStep("x", 1), RunStep("y", 1))


def test_held_remote_steps_wait_for_no_reply_until_unpaused() -> None:
    saga = Saga("remote", [Step("a", act), Step("r", Remote("svc.do"), timeout=10)])
    d = run(saga, SagaStarted(0), PauseRequested(1), StepSucceeded("a", 1, 2))
    assert d.state.step("r").deadline is None
    assert d.state.next_deadline is None
    d = run(saga, DeadlinePassed(100), state=d.state)
    assert d.state.step("r").status is StepStatus.RUNNING  # nothing timed out
    d = run(saga, UnpauseRequested(500), state=d.state)
    assert d.commands == (RunStep("r", 1),)
    assert d.state.step("r").deadline == 510


def test_a_paused_saga_adopted_after_a_crash_stays_parked() -> None:
    d = run(SAGA, SagaStarted(0), PauseRequested(1), SagaResumed(2))
    assert d.commands == ()
    assert d.state.held == ("a",)
    assert run(SAGA, SagaResumed(3), state=d.state).state == d.state
    d = run(SAGA, UnpauseRequested(4), state=d.state)
    assert d.commands == (RunStep("a", 1),)


# -- held retries keep what is left of their backoff ---------------------------

BACKOFF = RetryPolicy(attempts=2, backoff=10, jitter=0)
SLOW = Saga(
    "slow",
    [
        Step("a", act, compensate=act, compensation_retry=BACKOFF),
        Step("b", act, retry=BACKOFF),
        Step("r", Remote("svc.do"), retry=BACKOFF, timeout=7),
    ],
)


def b_retry_held_at_3() -> Decision:
    """b fails (retryably) at 3 while paused: its retry, due at 13, is held."""
    events = (SagaStarted(0), StepSucceeded("a", 1, 1), PauseRequested(2))
    return run(SLOW, *events, StepAttemptFailed("b", BOOM, True, 3))


def test_a_held_retry_keeps_its_due_time() -> None:
    d = b_retry_held_at_3()
    assert d.commands == ()
    assert d.state.held == ("b",)
    assert d.state.held_due == {"b": 13}


@pytest.mark.parametrize(
    ("unpaused_at", "delay"), [(5, 8), (12.5, 0.5), (13, 0), (100, 0)]
)
def test_an_unpaused_retry_waits_what_is_left_of_its_backoff(
    unpaused_at: float, delay: float
) -> None:
    d = run(SLOW, UnpauseRequested(unpaused_at), state=b_retry_held_at_3().state)
    assert d.commands == (RunStep("b", 2, delay),)
    assert d.state.held == ()
    assert d.state.held_due == {}


def test_an_unpaused_remote_retry_gets_its_deadline_after_the_backoff() -> None:
    d = run(SLOW, SagaStarted(0), StepSucceeded("a", 1, 1), StepSucceeded("b", 2, 2))
    d = run(
        SLOW, PauseRequested(3), StepAttemptFailed("r", BOOM, True, 4), state=d.state
    )
    assert d.state.held_due == {"r": 14}
    assert d.state.step("r").deadline is None  # nothing was sent
    d = run(SLOW, UnpauseRequested(6), state=d.state)
    assert d.commands == (RunStep("r", 2, 8),)
    assert d.state.step("r").deadline == 6 + 8 + 7


def test_a_held_compensation_retry_keeps_its_due_time() -> None:
    d = undo_a_fails_while_paused(SLOW, retryable=True)
    assert d.state.held == ("a",)
    assert d.state.held_due == {"a": 14}
    d = run(SLOW, UnpauseRequested(10), state=d.state)
    assert d.commands == (Compensate("a", 2, 4),)


def test_a_held_run_without_backoff_has_no_due_time() -> None:
    d = run(SLOW, SagaStarted(0), PauseRequested(1), StepSucceeded("a", 1, 2))
    assert d.state.held == ("b",)
    assert d.state.held_due == {}
    assert run(SLOW, UnpauseRequested(3), state=d.state).commands == (RunStep("b", 1),)


def test_readopting_a_held_retry_keeps_its_due_time() -> None:
    d = run(SLOW, SagaResumed(5), state=b_retry_held_at_3().state)
    assert d.commands == ()
    assert d.state.held_due == {"b": 13}


def test_a_held_retry_stored_without_a_due_time_runs_at_unpause() -> None:
    stored = b_retry_held_at_3().state.to_dict()
    assert stored["held_due"] == {"b": 13}
    assert SagaState.from_dict(json.loads(json.dumps(stored))).held_due == {"b": 13}
    del stored["held_due"]  # as an earlier release wrote it
    older = SagaState.from_dict(stored)
    assert older.held_due == {}
    d = run(SLOW, UnpauseRequested(5), state=older)
    assert d.commands == (RunStep("b", 2),)


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ((PauseRequested(1), PauseRequested(2)), "already paused"),
        ((UnpauseRequested(1),), "not paused"),
        ((PauseRequested(1), CancelRequested(2)), "unpause it before cancelling"),
        (
            (
                StepSucceeded("a", 1, 1),
                StepSucceeded("b", 2, 2),
                StepSucceeded("c", 3, 3),
                PauseRequested(4),
            ),
            "succeeded: only a running or compensating saga can be paused",
        ),
        (
            (
                StepSucceeded("a", 1, 1),
                StepSucceeded("b", 2, 2),
                StepSucceeded("c", 3, 3),
                UnpauseRequested(4),
            ),
            "not paused",
        ),
    ],
)
def test_requests_that_do_not_fit_are_refused(
    events: tuple[object, ...], message: str
) -> None:
    with pytest.raises(StateError, match=message):
        run(SAGA, SagaStarted(0), *events)


def test_a_state_stored_before_pausing_existed_loads_as_not_paused() -> None:
    state = run(SAGA, SagaStarted(0)).state
    stored = state.to_dict()
    assert "paused" not in stored
    assert "held" not in stored
    assert "held_due" not in stored
    assert SagaState.from_dict(stored) == state
    paused = run(SAGA, PauseRequested(1), StepSucceeded("a", 1, 2), state=state).state
    assert SagaState.from_dict(json.loads(json.dumps(paused.to_dict()))) == paused


# -- property: pausing never changes how a saga ends -------------------------

Outcome = str  # "ok", "retry" (retryable failure), "fail"


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Saga[Any], dict[tuple[str, int], Outcome]]:
    sizes = draw(st.lists(st.integers(1, 2), min_size=1, max_size=4))
    stages: list[Step | Parallel] = []
    outcomes: dict[tuple[str, int], Outcome] = {}
    for index, size in enumerate(sizes):
        group = []
        for j in range(size):
            name = f"s{index}{j}"
            comp = draw(st.booleans())
            group.append(
                Step(
                    name,
                    act,
                    act if comp else None,
                    retry=NO_WAIT,
                    compensation_retry=NO_WAIT,
                )
            )
            for attempt in (1, 2):
                outcomes[(name, attempt)] = draw(
                    st.sampled_from(["ok", "retry", "fail"])
                )
                outcomes[(f"~{name}", attempt)] = draw(
                    st.sampled_from(["ok", "ok", "retry", "fail"])
                )
        stages.append(group[0] if size == 1 else Parallel(*group))
    return Saga("prop", stages), outcomes


def simulate(
    saga: Saga[Any],
    outcomes: dict[tuple[str, int], Outcome],
    toggles: list[bool] | None,
) -> tuple[SagaState, list[tuple[str, int]]]:
    """Run the saga to its end, first-in first-out; before each outcome,
    ``toggles`` says whether to pause (or unpause) the saga."""
    state = initial_state(saga, "p")
    queue: list[Command] = []
    ran: list[tuple[str, int]] = []
    clock = 0.0

    def feed(event: object) -> None:
        nonlocal state
        decision = decide(saga, state, event)  # type: ignore[arg-type]
        state = decision.state
        if state.paused:
            assert not any(
                isinstance(c, (RunStep, Compensate)) for c in decision.commands
            )
        queue.extend(decision.commands)

    feed(SagaStarted(clock))
    toggles = list(toggles or [])
    while not state.status.terminal:
        clock += 1
        toggle = toggles.pop(0) if toggles else False
        if (toggle or (state.paused and not queue)) and not state.status.terminal:
            feed(UnpauseRequested(clock) if state.paused else PauseRequested(clock))
            continue
        command = queue.pop(0)
        if isinstance(command, FinishSaga):
            continue
        if isinstance(command, RunStep):
            ran.append((command.step, command.attempt))
            outcome = outcomes[(command.step, command.attempt)]
            if outcome == "ok":
                feed(StepSucceeded(command.step, None, clock))
            else:
                feed(StepAttemptFailed(command.step, BOOM, outcome == "retry", clock))
        else:
            assert isinstance(command, Compensate)
            ran.append((f"~{command.step}", command.attempt))
            outcome = outcomes[(f"~{command.step}", command.attempt)]
            if outcome == "ok":
                feed(CompensationSucceeded(command.step, clock))
            else:
                event = CompensationAttemptFailed(
                    command.step, BOOM, outcome == "retry", clock
                )
                feed(event)
    return state, ran


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.lists(st.booleans(), max_size=30))
def test_pausing_and_unpausing_never_changes_the_outcome(
    scenario: tuple[Saga[Any], dict[tuple[str, int], Outcome]], toggles: list[bool]
) -> None:
    saga, outcomes = scenario
    plain, plain_ran = simulate(saga, outcomes, None)
    paused, paused_ran = simulate(saga, outcomes, toggles)
    assert paused.status is plain.status
    assert paused.failed_step == plain.failed_step
    assert {n: s.status for n, s in paused.steps.items()} == {
        n: s.status for n, s in plain.steps.items()
    }
    assert sorted(paused_ran) == sorted(plain_ran)
    assert not paused.paused
    assert paused.held == ()
