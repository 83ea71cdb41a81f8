"""Semantic locks in the engine: events in, state and commands out."""

from __future__ import annotations

from typing import Any

import pytest

from sagakit.definition import Lock, Parallel, RetryPolicy, Saga, Step
from sagakit.engine import (
    AcquireLocks,
    CancelRequested,
    Compensate,
    CompensationSucceeded,
    DeadlinePassed,
    FinishSaga,
    LockKeyFailed,
    LockReleaseRequested,
    LocksAcquired,
    LocksBusy,
    LocksFreed,
    PauseRequested,
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
from sagakit.engine.decide import Decision
from sagakit.engine.lockstate import LockHold, LockState, LockWait
from sagakit.engine.state import ErrorInfo
from sagakit.errors import StateError
from sagakit.ports.locks import LockChange, lock_change

BOOM = ErrorInfo("Boom", "no")


def act(ctx: object) -> None:
    return None


SAGA = Saga(
    "booking",
    [
        Step("quote", act, compensate=act),
        Step(
            "reserve",
            act,
            compensate=act,
            compensate_on_failure=True,
            locks=["seat:{ctx.seat}", Lock("row:{ctx.row}", timeout=10)],
        ),
        Step("hold", act, compensate=act, locks=[Lock("fare:{ctx.fare}", until="pay")]),
        Step("pay", act, pivot=True, locks=[Lock("card:{ctx.card}", mode="fail")]),
        Step("ship", act),
    ],
)
KEYS = ("seat:1A", "row:1")


def run(*events: object, state: SagaState | None = None) -> Decision:
    decision = Decision(state or initial_state(SAGA, "s1"), ())
    for event in events:
        decision = decide(SAGA, decision.state, event)  # type: ignore[arg-type]
    return decision


def waiting_for_reserve(at: float = 2) -> Decision:
    return run(SagaStarted(0), StepSucceeded("quote", 1, at))


def holding_reserve() -> Decision:
    return run(LocksAcquired("reserve", KEYS, 3), state=waiting_for_reserve().state)


def test_a_step_with_locks_waits_for_them_instead_of_starting() -> None:
    d = waiting_for_reserve()
    assert d.commands == (AcquireLocks("reserve"),)
    assert d.state.step("reserve").status is StepStatus.PENDING
    assert d.state.locks == LockState({}, {"reserve": LockWait(since=2)})


def test_granted_locks_start_the_step_and_are_held() -> None:
    d = holding_reserve()
    assert d.commands == (RunStep("reserve", 1),)
    assert d.state.step("reserve").status is StepStatus.RUNNING
    assert d.state.stage == 1
    assert d.state.locks == LockState(
        {"seat:1A": LockHold("reserve"), "row:1": LockHold("reserve")}, {}
    )


def test_busy_locks_queue_the_step_until_its_timeout() -> None:
    busy = LocksBusy("reserve", KEYS, {"row:1": "other"}, 5)
    d = run(busy, state=waiting_for_reserve().state)
    assert d.commands == ()
    assert d.state.step("reserve").status is StepStatus.PENDING
    assert d.state.locks is not None
    assert d.state.locks.waits == {"reserve": LockWait(2, KEYS, deadline=12)}
    # asked again and still busy: nothing changes
    again = run(LocksFreed(8), busy, state=d.state)
    assert again.state == d.state
    # the timeout passes: the step fails without running, the saga rolls back
    late = run(DeadlinePassed(12), state=d.state)
    assert late.state.step("reserve").status is StepStatus.FAILED
    assert late.state.step("reserve").error is not None
    assert late.state.step("reserve").error.type == "LockTimeout"
    assert late.state.status is SagaStatus.COMPENSATING
    # its compensate_on_failure does not run: it never started
    assert late.commands == (Compensate("quote", 1),)
    assert late.state.locks is None


def test_a_key_without_a_timeout_waits_for_as_long_as_it_takes() -> None:
    d = run(
        LocksBusy("reserve", KEYS, {"seat:1A": "o"}, 5),
        state=waiting_for_reserve().state,
    )
    assert d.state.locks is not None
    assert d.state.locks.waits["reserve"].deadline is None
    assert run(DeadlinePassed(10**9), state=d.state).state == d.state


def test_a_busy_key_in_fail_mode_fails_the_step_at_once() -> None:
    d = run(
        LocksAcquired("reserve", KEYS, 3),
        StepSucceeded("reserve", 1, 4),
        LocksAcquired("hold", ("fare:y",), 5),
        StepSucceeded("hold", 1, 6),
        LocksBusy("pay", ("card:9",), {"card:9": "other"}, 7),
        state=waiting_for_reserve().state,
    )
    error = d.state.step("pay").error
    assert error == ErrorInfo(
        "LockUnavailable", "step 'pay': card:9 is held by saga other"
    )
    assert d.state.status is SagaStatus.COMPENSATING
    assert d.commands == (Compensate("hold", 1),)


def test_a_wait_that_closes_a_cycle_fails_the_step() -> None:
    busy = LocksBusy("reserve", KEYS, {"seat:1A": "s2"}, 5, deadlock=("s2",))
    d = run(busy, state=waiting_for_reserve().state)
    error = d.state.step("reserve").error
    assert error is not None
    assert error.type == "LockDeadlock"
    assert "s1 -> s2 -> s1" in error.message
    assert d.state.status is SagaStatus.COMPENSATING


def test_a_key_that_cannot_be_made_fails_the_step() -> None:
    bad = LockKeyFailed("reserve", ErrorInfo("LockKeyError", "ctx has no seat"), 4)
    d = run(bad, state=waiting_for_reserve().state)
    assert d.state.step("reserve").status is StepStatus.FAILED
    assert d.commands == (Compensate("quote", 1),)


def test_until_releases_when_that_step_succeeds_the_rest_at_the_end() -> None:
    d = run(
        StepSucceeded("reserve", 1, 4),
        LocksAcquired("hold", ("fare:y",), 5),
        StepSucceeded("hold", 1, 6),
        LocksAcquired("pay", ("card:9",), 7),
        state=holding_reserve().state,
    )
    assert d.state.locks is not None
    assert set(d.state.locks.held) == {"seat:1A", "row:1", "fare:y", "card:9"}
    d = run(StepSucceeded("pay", 1, 8), state=d.state)
    assert d.state.locks is not None
    assert set(d.state.locks.held) == {"seat:1A", "row:1", "card:9"}
    d = run(StepSucceeded("ship", 1, 9), state=d.state)
    assert d.state.status is SagaStatus.SUCCEEDED
    assert d.state.locks is None


def test_a_saga_that_ends_any_way_holds_nothing() -> None:
    failed = run(
        StepAttemptFailed("reserve", BOOM, False, 4), state=holding_reserve().state
    )
    assert failed.state.status is SagaStatus.COMPENSATING
    assert failed.state.locks is not None  # held while it compensates
    done = run(
        CompensationSucceeded("reserve", 5),
        CompensationSucceeded("quote", 6),
        state=failed.state,
    )
    assert done.state.status is SagaStatus.COMPENSATED
    assert done.state.locks is None
    # past the pivot: failed, for an operator, holding nothing either
    past = run(
        StepSucceeded("reserve", 1, 4),
        LocksAcquired("hold", ("fare:y",), 5),
        StepSucceeded("hold", 1, 6),
        LocksAcquired("pay", ("card:9",), 7),
        StepSucceeded("pay", 1, 8),
        StepAttemptFailed("ship", BOOM, False, 9),
        state=holding_reserve().state,
    )
    assert past.state.status is SagaStatus.FAILED
    assert past.state.locks is None


def test_rolling_back_stops_the_waits() -> None:
    saga = Saga(
        "pair",
        [Parallel(Step("a", act, locks=["k:{ctx.a}"]), Step("b", act))],
    )
    d = decide(saga, initial_state(saga, "s1"), SagaStarted(0))
    assert d.commands == (AcquireLocks("a"), RunStep("b", 1))
    d = decide(saga, d.state, LocksBusy("a", ("k:1",), {"k:1": "x"}, 1))
    assert d.state.locks is not None
    d = decide(saga, d.state, StepAttemptFailed("b", BOOM, False, 2))
    assert d.state.status is SagaStatus.COMPENSATED
    assert d.state.locks is None
    assert d.commands == (FinishSaga(SagaStatus.COMPENSATED),)


def test_an_operator_cancel_of_a_waiting_saga_leaves_the_queue() -> None:
    d = run(
        LocksBusy("reserve", KEYS, {"seat:1A": "o"}, 5),
        CancelRequested(6),
        state=waiting_for_reserve().state,
    )
    assert d.state.status is SagaStatus.COMPENSATING
    assert d.state.locks is None
    assert d.commands == (Compensate("quote", 1),)


def test_a_pause_leaves_the_queues_and_an_unpause_asks_again() -> None:
    queued = run(
        LocksBusy("reserve", KEYS, {"row:1": "o"}, 5),
        state=waiting_for_reserve().state,
    )
    paused = run(PauseRequested(6), state=queued.state)
    assert paused.state.locks is not None
    assert paused.state.locks.waits == {"reserve": LockWait(2, (), deadline=12)}
    assert run(LocksFreed(7), state=paused.state).commands == ()
    unpaused = run(UnpauseRequested(8), state=paused.state)
    assert unpaused.commands == (AcquireLocks("reserve"),)
    # a step that became ready while paused waits for the unpause too
    d = run(
        PauseRequested(2.5),
        StepSucceeded("quote", 1, 3),
        state=run(SagaStarted(0)).state,
    )
    assert d.commands == ()
    assert run(UnpauseRequested(4), state=d.state).commands == (
        AcquireLocks("reserve"),
    )


def test_a_resumed_saga_asks_only_for_locks_it_never_asked_for() -> None:
    asked = waiting_for_reserve().state
    assert run(SagaResumed(9), state=asked).commands == (AcquireLocks("reserve"),)
    queued = run(LocksBusy("reserve", KEYS, {"seat:1A": "o"}, 5), state=asked).state
    assert run(SagaResumed(9), state=queued).commands == ()  # its queue wakes it
    assert run(LocksFreed(10), state=queued).commands == (AcquireLocks("reserve"),)


def test_an_operator_releases_a_key_the_saga_goes_on_without_it() -> None:
    held = holding_reserve().state
    d = run(LockReleaseRequested("row:1", 5, "stuck row", "ana"), state=held)
    assert d.state.locks is not None
    assert set(d.state.locks.held) == {"seat:1A"}
    assert d.state.step("reserve").status is StepStatus.RUNNING
    with pytest.raises(StateError, match="does not hold lock 'row:9'"):
        run(LockReleaseRequested("row:9", 5, "?"), state=held)


def test_a_retried_failed_saga_takes_the_locks_of_its_steps_again() -> None:
    saga = Saga(
        "after_pivot",
        [
            Step("pay", act, pivot=True),
            Step("ship", act, retry=RetryPolicy(attempts=1), locks=["truck:{ctx.t}"]),
        ],
    )
    d = decide(saga, initial_state(saga, "s1"), SagaStarted(0))
    d = decide(saga, d.state, StepSucceeded("pay", 1, 1))
    d = decide(saga, d.state, LocksAcquired("ship", ("truck:1",), 2))
    d = decide(saga, d.state, StepAttemptFailed("ship", BOOM, True, 3))
    assert d.state.status is SagaStatus.FAILED
    assert d.state.locks is None
    d = decide(saga, d.state, RetryRequested(4))
    assert d.commands == (AcquireLocks("ship"),)
    d = decide(saga, d.state, LocksAcquired("ship", ("truck:1",), 5))
    assert d.commands == (RunStep("ship", 2),)
    assert d.state.step("ship").retry_base == 1


@pytest.mark.parametrize(
    "event",
    [
        LocksAcquired("reserve", KEYS, 3),
        LocksBusy("reserve", KEYS, {}, 3),
        LockKeyFailed("reserve", BOOM, 3),
    ],
)
def test_a_lock_event_for_a_step_that_does_not_wait_is_stale(event: Any) -> None:
    with pytest.raises(StateError, match="stale"):
        run(event, state=holding_reserve().state)


def test_the_lock_state_round_trips_and_is_absent_without_locks() -> None:
    locks = LockState(
        {"seat:1A": LockHold("reserve", "pay")},
        {"hold": LockWait(2, ("fare:y",), deadline=12)},
    )
    state = holding_reserve().state.but(locks=locks)
    assert SagaState.from_dict(state.to_dict()) == state
    plain = run(SagaStarted(0)).state
    assert plain.locks is None
    assert "locks" not in plain.to_dict()


def test_the_store_change_of_a_transition() -> None:
    waiting = waiting_for_reserve().state
    queued = run(LocksBusy("reserve", KEYS, {"seat:1A": "o"}, 5), state=waiting).state
    assert lock_change(waiting, waiting) is None
    assert lock_change(waiting, queued) == LockChange(
        wait=(("row:1", "reserve", 2), ("seat:1A", "reserve", 2))
    )
    held = run(LocksAcquired("reserve", KEYS, 6), state=queued).state
    assert lock_change(queued, held) == LockChange(
        acquire=(("row:1", "reserve"), ("seat:1A", "reserve")),
        unwait=(("row:1", "reserve"), ("seat:1A", "reserve")),
    )
    ended = run(StepAttemptFailed("reserve", BOOM, False, 7), state=held).state
    ended = run(
        CompensationSucceeded("reserve", 8),
        CompensationSucceeded("quote", 9),
        state=ended,
    ).state
    assert lock_change(held, ended) == LockChange(release=("row:1", "seat:1A"))
