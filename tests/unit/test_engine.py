from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from sagakit.definition import Parallel, RetryPolicy, Saga, Step
from sagakit.engine import (
    Command,
    Compensate,
    CompensationAttemptFailed,
    CompensationSucceeded,
    ErrorInfo,
    Event,
    FinishSaga,
    RunStep,
    SagaResumed,
    SagaStarted,
    SagaState,
    SagaStatus,
    StepAttemptFailed,
    StepStatus,
    StepSucceeded,
    decide,
    initial_state,
)
from sagakit.engine.state import INTERRUPTED, StepState
from sagakit.errors import StateError

# -- building blocks ---------------------------------------------------------


def act(ctx: Any) -> None:
    return None


def undo(ctx: Any) -> None:
    return None


def st(name: str, *, comp: bool = True, **kw: Any) -> Step:
    """A step with a compensation unless ``comp=False``."""
    return Step(name, act, undo if comp else None, **kw)


def pivot(name: str) -> Step:
    return Step(name, act, pivot=True)


BOOM = ErrorInfo("Boom", "step exploded")
OTHER = ErrorInfo("Other", "sibling broke too")
UNDO_1 = ErrorInfo("UndoFailed", "first compensation attempt")
UNDO_2 = ErrorInfo("UndoFailed", "compensation gave up")

STARTED = SagaStarted(at=0.0)
RESUMED = SagaResumed(at=99.0)


def ok(step: str, result: Any = None) -> StepSucceeded:
    return StepSucceeded(step, result, at=1.0)


def fail(
    step: str,
    *,
    retryable: bool = False,
    jitter: float = 0.0,
    error: ErrorInfo = BOOM,
) -> StepAttemptFailed:
    return StepAttemptFailed(step, error, retryable, at=1.0, jitter=jitter)


def cok(step: str) -> CompensationSucceeded:
    return CompensationSucceeded(step, at=2.0)


def cfail(
    step: str,
    *,
    retryable: bool = False,
    jitter: float = 0.0,
    error: ErrorInfo = UNDO_2,
) -> CompensationAttemptFailed:
    return CompensationAttemptFailed(step, error, retryable, at=2.0, jitter=jitter)


def run(step: str, attempt: int = 1, delay: float = 0.0) -> RunStep:
    return RunStep(step, attempt, delay)


def comp(step: str, attempt: int = 1, delay: float = 0.0) -> Compensate:
    return Compensate(step, attempt, delay)


def finish(status: SagaStatus) -> FinishSaga:
    return FinishSaga(status)


S = StepStatus

# -- the table ---------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """Feed ``script`` (event -> the exact commands expected) to a fresh saga."""

    id: str
    saga: Callable[[], Saga[Any]]
    script: list[tuple[Event, tuple[Command, ...]]]
    status: SagaStatus
    steps: Mapping[str, StepStatus]
    fields: Mapping[str, Any] = field(default_factory=dict)
    step_fields: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


CASES: list[Case] = [
    Case(
        "success-sequential",
        lambda: Saga("order", [st("a"), st("b"), st("c", comp=False)]),
        [
            (STARTED, (run("a"),)),
            (ok("a", {"reservation": 7}), (run("b"),)),
            (ok("b"), (run("c"),)),
            (ok("c", 3), (finish(SagaStatus.SUCCEEDED),)),
        ],
        SagaStatus.SUCCEEDED,
        {"a": S.SUCCEEDED, "b": S.SUCCEEDED, "c": S.SUCCEEDED},
        {
            "completed": ("a", "b", "c"),
            "stage": 3,
            "compensations": None,
            "failed_step": None,
            "error": None,
            "results": {"a": {"reservation": 7}, "c": 3},
        },
        {"a": {"attempts": 1, "result": {"reservation": 7}}},
    ),
    Case(
        "parallel-stage-starts-together-and-advances-when-all-succeeded",
        lambda: Saga("order", [st("a"), Parallel(st("b"), st("c"), st("d")), st("e")]),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"), run("c"), run("d"))),
            (ok("c"), ()),
            (ok("b"), ()),
            (ok("d"), (run("e"),)),
            (ok("e"), (finish(SagaStatus.SUCCEEDED),)),
        ],
        SagaStatus.SUCCEEDED,
        {n: S.SUCCEEDED for n in "abcde"},
        {"completed": ("a", "c", "b", "d", "e"), "stage": 3},
    ),
    Case(
        "parallel-stage-in-flight",
        lambda: Saga("order", [Parallel(st("b"), st("c")), st("e")]),
        [
            (STARTED, (run("b"), run("c"))),
            (ok("c"), ()),
        ],
        SagaStatus.RUNNING,
        {"b": S.RUNNING, "c": S.SUCCEEDED, "e": S.PENDING},
        {"completed": ("c",), "stage": 0},
    ),
    Case(
        "failure-compensates-parallel-siblings-concurrently",
        lambda: Saga("order", [Parallel(st("a"), st("b"), st("c")), st("d")]),
        [
            (STARTED, (run("a"), run("b"), run("c"))),
            (ok("b"), ()),
            (ok("a"), ()),
            (ok("c"), (run("d"),)),
            # issued in reverse completion order, all at once
            (fail("d"), (comp("c"), comp("a"), comp("b"))),
            (cok("c"), ()),
            (cok("a"), ()),
            (cok("b"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.COMPENSATED, "c": S.COMPENSATED, "d": S.FAILED},
        {
            "failed_step": "d",
            "error": BOOM,
            "compensations": (),
            "completed": ("b", "a", "c"),
            "compensation_step": None,
            "compensation_error": None,
        },
        {"d": {"error": BOOM}, "c": {"compensation_attempts": 1}},
    ),
    Case(
        "steps-without-compensation-are-skipped",
        lambda: Saga("order", [st("a"), st("b", comp=False), st("c"), st("d")]),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"),)),
            (ok("b"), (run("c"),)),
            (ok("c"), (run("d"),)),
            (fail("d"), (comp("c"),)),
            (cok("c"), (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.SUCCEEDED, "c": S.COMPENSATED, "d": S.FAILED},
    ),
    Case(
        "first-step-fails-nothing-to-compensate",
        lambda: Saga("order", [st("a"), st("b")]),
        [
            (STARTED, (run("a"),)),
            (fail("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.FAILED, "b": S.PENDING},
        {"failed_step": "a", "error": BOOM, "compensations": ()},
    ),
    Case(
        "retries-with-backoff-and-jitter",
        lambda: Saga(
            "order",
            [
                st(
                    "a",
                    retry=RetryPolicy(
                        attempts=4,
                        backoff=1.0,
                        multiplier=3.0,
                        max_backoff=5.0,
                        jitter=0.5,
                    ),
                ),
                st("b"),
            ],
        ),
        [
            (STARTED, (run("a"),)),
            # 1.0 * 3**0 * (1 - 0.5 * 0.0)
            (fail("a", retryable=True, jitter=0.0), (run("a", 2, 1.0),)),
            # 1.0 * 3**1 * (1 - 0.5 * 0.5)
            (fail("a", retryable=True, jitter=0.5), (run("a", 3, 2.25),)),
            # min(5.0, 1.0 * 3**2) * (1 - 0.5 * 0.25)
            (fail("a", retryable=True, jitter=0.25), (run("a", 4, 4.375),)),
            (ok("a"), (run("b"),)),
        ],
        SagaStatus.RUNNING,
        {"a": S.SUCCEEDED, "b": S.RUNNING},
        {"failed_step": None, "error": None, "completed": ("a",)},
        {"a": {"attempts": 4}, "b": {"attempts": 1}},
    ),
    Case(
        "retry-keeps-last-error-on-the-step",
        lambda: Saga("order", [st("a", retry=RetryPolicy(attempts=2, backoff=0.5))]),
        [
            (STARTED, (run("a"),)),
            (fail("a", retryable=True), (run("a", 2, 0.5),)),
        ],
        SagaStatus.RUNNING,
        {"a": S.RUNNING},
        {"failed_step": None, "error": None},
        {"a": {"attempts": 2, "error": BOOM}},
    ),
    Case(
        "non-retryable-error-fails-at-once",
        lambda: Saga("order", [st("a"), st("b", retry=RetryPolicy(attempts=3))]),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"),)),
            (fail("b", retryable=False), (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.FAILED},
        {"failed_step": "b", "error": BOOM},
        {"b": {"attempts": 1}},
    ),
    Case(
        "retryable-error-without-retry-budget-fails-at-once",
        lambda: Saga("order", [st("a"), st("b")]),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"),)),
            (fail("b", retryable=True), (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.FAILED},
        {"failed_step": "b"},
    ),
    Case(
        "retry-budget-exhausted",
        lambda: Saga(
            "order",
            [st("a"), st("b", retry=RetryPolicy(attempts=2, backoff=0.5, jitter=0))],
        ),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"),)),
            (fail("b", retryable=True, error=OTHER), (run("b", 2, 0.5),)),
            (fail("b", retryable=True), (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.FAILED},
        {"failed_step": "b", "error": BOOM},
        {"b": {"attempts": 2, "error": BOOM}},
    ),
    Case(
        "compensate-on-failure-undoes-the-failed-step-first",
        lambda: Saga("order", [st("a"), st("b", compensate_on_failure=True), st("c")]),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"),)),
            (fail("b"), (comp("b"),)),
            (cok("b"), (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.COMPENSATED, "c": S.PENDING},
        {"failed_step": "b", "completed": ("a", "b")},
        {"b": {"error": BOOM}},
    ),
    Case(
        "failed-step-without-compensate-on-failure-is-not-undone",
        lambda: Saga("order", [st("a"), st("b")]),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"),)),
            (fail("b"), (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.FAILED},
        {"completed": ("a",)},
        {"b": {"compensation_attempts": 0}},
    ),
    Case(
        "failure-after-pivot-ends-failed-without-compensation",
        lambda: Saga(
            "order",
            [
                st("a"),
                pivot("charge"),
                st("ship", comp=False, retry=RetryPolicy(attempts=2, backoff=1.0)),
            ],
        ),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("charge"),)),
            (ok("charge"), (run("ship"),)),
            (fail("ship", retryable=True), (run("ship", 2, 1.0),)),
            (fail("ship", retryable=True), (finish(SagaStatus.FAILED),)),
        ],
        SagaStatus.FAILED,
        {"a": S.SUCCEEDED, "charge": S.SUCCEEDED, "ship": S.FAILED},
        {"failed_step": "ship", "error": BOOM, "compensations": ()},
        {"a": {"compensation_attempts": 0}},
    ),
    Case(
        "failure-after-pivot-waits-for-parallel-sibling",
        lambda: Saga(
            "order",
            [pivot("charge"), Parallel(st("mail", comp=False), st("ship", comp=False))],
        ),
        [
            (STARTED, (run("charge"),)),
            (ok("charge"), (run("mail"), run("ship"))),
            (fail("ship"), ()),
            (ok("mail"), (finish(SagaStatus.FAILED),)),
        ],
        SagaStatus.FAILED,
        {"charge": S.SUCCEEDED, "mail": S.SUCCEEDED, "ship": S.FAILED},
        {"failed_step": "ship"},
    ),
    Case(
        "failure-at-pivot-compensates",
        lambda: Saga("order", [st("a"), pivot("charge"), st("ship", comp=False)]),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("charge"),)),
            (fail("charge"), (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "charge": S.FAILED, "ship": S.PENDING},
        {"failed_step": "charge"},
    ),
    Case(
        "failure-before-pivot-compensates",
        lambda: Saga("order", [st("a"), st("b"), pivot("charge")]),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"),)),
            (fail("b"), (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.FAILED, "charge": S.PENDING},
    ),
    Case(
        "compensation-retries-then-compensation-failed-keeps-both-errors",
        lambda: Saga(
            "order",
            [
                st(
                    "a",
                    compensation_retry=RetryPolicy(attempts=2, backoff=2.0, jitter=0.5),
                ),
                st("b"),
                st("c"),
            ],
        ),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"),)),
            (ok("b"), (run("c"),)),
            (fail("c"), (comp("b"),)),
            (cok("b"), (comp("a"),)),
            # 2.0 * 2**0 * (1 - 0.5 * 0.5)
            (
                cfail("a", retryable=True, jitter=0.5, error=UNDO_1),
                (comp("a", 2, 1.5),),
            ),
            (
                cfail("a", retryable=True, error=UNDO_2),
                (finish(SagaStatus.COMPENSATION_FAILED),),
            ),
        ],
        SagaStatus.COMPENSATION_FAILED,
        {"a": S.COMPENSATION_FAILED, "b": S.COMPENSATED, "c": S.FAILED},
        {
            "failed_step": "c",
            "error": BOOM,
            "compensation_step": "a",
            "compensation_error": UNDO_2,
            "compensations": ("a",),
        },
        {"a": {"compensation_attempts": 2}},
    ),
    Case(
        "non-retryable-compensation-failure-stops-rollback",
        lambda: Saga("order", [st("a"), st("b"), st("c")]),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"),)),
            (ok("b"), (run("c"),)),
            (fail("c"), (comp("b"),)),
            (cfail("b", retryable=False), (finish(SagaStatus.COMPENSATION_FAILED),)),
        ],
        SagaStatus.COMPENSATION_FAILED,
        {"a": S.SUCCEEDED, "b": S.COMPENSATION_FAILED, "c": S.FAILED},
        {
            "failed_step": "c",
            "error": BOOM,
            "compensation_step": "b",
            "compensation_error": UNDO_2,
        },
        {"b": {"compensation_attempts": 1}},
    ),
    Case(
        "parallel-sibling-in-flight-succeeds-then-is-compensated",
        lambda: Saga(
            "order",
            [
                st("a"),
                Parallel(st("b", retry=RetryPolicy(attempts=3)), st("c")),
                st("d"),
            ],
        ),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"), run("c"))),
            (fail("c"), ()),
            (ok("b"), (comp("b"),)),
            (cok("b"), (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.COMPENSATED, "c": S.FAILED, "d": S.PENDING},
        {"failed_step": "c", "error": BOOM, "completed": ("a", "b")},
    ),
    Case(
        "parallel-sibling-in-flight-is-not-retried-after-a-failure",
        lambda: Saga(
            "order",
            [
                st("a"),
                Parallel(st("b", retry=RetryPolicy(attempts=3)), st("c")),
                st("d"),
            ],
        ),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"), run("c"))),
            (fail("c"), ()),
            (fail("b", retryable=True, error=OTHER), (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.FAILED, "c": S.FAILED, "d": S.PENDING},
        {"failed_step": "c", "error": BOOM},
        {"b": {"attempts": 1, "error": OTHER}},
    ),
    Case(
        "parallel-sibling-retrying-when-other-fails",
        lambda: Saga(
            "order",
            [
                st("a"),
                Parallel(
                    st("b", retry=RetryPolicy(attempts=3, backoff=1.0)),
                    st("c", compensate_on_failure=True),
                ),
            ],
        ),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"), run("c"))),
            (fail("b", retryable=True, error=OTHER), (run("b", 2, 1.0),)),
            (fail("c"), ()),
            (ok("b"), (comp("b"), comp("c"))),
            (cok("b"), ()),
            (cok("c"), (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.COMPENSATED, "c": S.COMPENSATED},
        {"failed_step": "c", "error": BOOM, "completed": ("a", "c", "b")},
    ),
    Case(
        "resumed-while-running-reruns-only-running-steps",
        lambda: Saga(
            "order",
            [
                st("a"),
                Parallel(st("b"), st("c", retry=RetryPolicy(attempts=3, backoff=1.0))),
                st("d"),
            ],
        ),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"), run("c"))),
            (RESUMED, (run("b"), run("c"))),
            (ok("b"), ()),
            (fail("c", retryable=True), (run("c", 2, 1.0),)),
            # b committed: not re-run; c keeps its attempt number, no delay
            (RESUMED, (run("c", 2),)),
            (ok("c"), (run("d"),)),
            (RESUMED, (run("d"),)),
            (ok("d"), (finish(SagaStatus.SUCCEEDED),)),
        ],
        SagaStatus.SUCCEEDED,
        {n: S.SUCCEEDED for n in "abcd"},
        {"completed": ("a", "b", "c", "d")},
        {"c": {"attempts": 2}, "b": {"attempts": 1}},
    ),
    Case(
        "resumed-before-started-runs-the-first-stage",
        lambda: Saga("order", [Parallel(st("a"), st("b")), st("c")]),
        [
            (RESUMED, (run("a"), run("b"))),
            (ok("a"), ()),
            (ok("b"), (run("c"),)),
            (ok("c"), (finish(SagaStatus.SUCCEEDED),)),
        ],
        SagaStatus.SUCCEEDED,
        {n: S.SUCCEEDED for n in "abc"},
        {"completed": ("a", "b", "c")},
    ),
    Case(
        "resumed-while-compensating-treats-in-flight-step-as-interrupted",
        lambda: Saga(
            "order",
            [st("a"), Parallel(st("b", compensate_on_failure=True), st("c")), st("d")],
        ),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"), run("c"))),
            (fail("c"), ()),
            # b's outcome is unknown: failed, and it asked to be undone on failure
            (RESUMED, (comp("b"),)),
            (cok("b"), (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.COMPENSATED, "c": S.FAILED, "d": S.PENDING},
        {"failed_step": "c", "error": BOOM, "completed": ("a", "b")},
        {"b": {"error": INTERRUPTED}, "c": {"error": BOOM}},
    ),
    Case(
        "resumed-while-compensating-interrupted-step-without-compensate-on-failure",
        lambda: Saga("order", [st("a"), Parallel(st("b"), st("c")), st("d")]),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"), run("c"))),
            (fail("c"), ()),
            (RESUMED, (comp("a"),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.FAILED, "c": S.FAILED, "d": S.PENDING},
        {"failed_step": "c", "error": BOOM, "completed": ("a",)},
        {"b": {"error": INTERRUPTED}},
    ),
    Case(
        "resumed-while-compensating-resumes-at-queue-head",
        lambda: Saga(
            "order",
            [
                st("a", compensation_retry=RetryPolicy(attempts=3, backoff=1.0)),
                st("b"),
                st("c"),
            ],
        ),
        [
            (STARTED, (run("a"),)),
            (ok("a"), (run("b"),)),
            (ok("b"), (run("c"),)),
            (fail("c"), (comp("b"),)),
            (RESUMED, (comp("b"),)),
            (cok("b"), (comp("a"),)),
            (cfail("a", retryable=True), (comp("a", 2, 1.0),)),
            (RESUMED, (comp("a", 2),)),
            (cok("a"), (finish(SagaStatus.COMPENSATED),)),
        ],
        SagaStatus.COMPENSATED,
        {"a": S.COMPENSATED, "b": S.COMPENSATED, "c": S.FAILED},
        {"failed_step": "c", "compensations": ()},
        {"a": {"compensation_attempts": 2}, "b": {"compensation_attempts": 1}},
    ),
]


def play(case: Case) -> tuple[Saga[Any], list[SagaState]]:
    saga = case.saga()
    state = initial_state(saga, "saga-1")
    states = [state]
    for index, (event, expected) in enumerate(case.script):
        decision = decide(saga, state, event)
        assert decision.commands == expected, f"after event #{index}: {event}"
        state = decision.state
        states.append(state)
    return saga, states


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_engine_table(case: Case) -> None:
    _, states = play(case)
    final = states[-1]
    assert final.status is case.status
    assert {n: s.status for n, s in final.steps.items()} == dict(case.steps)
    for attr, expected in case.fields.items():
        assert getattr(final, attr) == expected, attr
    for name, expected_fields in case.step_fields.items():
        for attr, expected in expected_fields.items():
            assert getattr(final.steps[name], attr) == expected, (name, attr)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_state_round_trips_through_json(case: Case) -> None:
    _, states = play(case)
    for state in states:
        data = json.loads(json.dumps(state.to_dict()))
        assert SagaState.from_dict(data) == state
        assert SagaState.from_dict(data).to_dict() == state.to_dict()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_decide_leaves_its_input_state_untouched(case: Case) -> None:
    saga = case.saga()
    state = initial_state(saga, "saga-1")
    for event, _ in case.script:
        before = state.to_dict()
        new = decide(saga, state, event).state
        assert state.to_dict() == before
        state = new


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_decisions_are_deterministic(case: Case) -> None:
    _, first = play(case)
    _, second = play(case)
    assert first == second


def test_initial_state() -> None:
    saga: Saga[Any] = Saga("order", [st("a"), Parallel(st("b"), st("c"))])
    state = initial_state(saga, "id-9")
    assert state.saga_id == "id-9"
    assert state.saga_name == "order"
    assert state.status is SagaStatus.RUNNING
    assert state.stage == 0
    assert list(state.steps) == ["a", "b", "c"]
    assert all(s == StepState() for s in state.steps.values())
    assert state.completed == ()
    assert state.compensations is None


def test_to_dict_shape() -> None:
    state = SagaState(
        saga_id="s-1",
        saga_name="order",
        status=SagaStatus.COMPENSATION_FAILED,
        stage=1,
        steps={
            "a": StepState(
                StepStatus.COMPENSATION_FAILED, attempts=1, compensation_attempts=3
            ),
            "b": StepState(StepStatus.FAILED, attempts=2, error=BOOM, result=0),
            "c": StepState(),
        },
        completed=("a",),
        compensations=("a",),
        failed_step="b",
        error=BOOM,
        compensation_step="a",
        compensation_error=ErrorInfo("UndoFailed", "no", "Traceback ..."),
    )
    expected = {
        "saga_id": "s-1",
        "saga_name": "order",
        "status": "compensation_failed",
        "stage": 1,
        "steps": {
            "a": {
                "status": "compensation_failed",
                "attempts": 1,
                "compensation_attempts": 3,
            },
            "b": {
                "status": "failed",
                "attempts": 2,
                "result": 0,
                "error": {
                    "type": "Boom",
                    "message": "step exploded",
                    "traceback": None,
                },
            },
            "c": {"status": "pending"},
        },
        "completed": ["a"],
        "compensations": ["a"],
        "failed_step": "b",
        "error": {"type": "Boom", "message": "step exploded", "traceback": None},
        "compensation_step": "a",
        "compensation_error": {
            "type": "UndoFailed",
            "message": "no",
            "traceback": "Traceback ...",
        },
    }
    assert state.to_dict() == expected
    assert SagaState.from_dict(expected) == state


def test_compensations_none_and_empty_are_distinct_after_round_trip() -> None:
    base = SagaState("s", "order")
    assert SagaState.from_dict(base.to_dict()).compensations is None
    emptied = SagaState("s", "order", compensations=())
    assert SagaState.from_dict(emptied.to_dict()).compensations == ()


# -- stale, duplicate and late events ------------------------------------------


def three_steps() -> Saga[Any]:
    return Saga("order", [st("a"), Parallel(st("b"), st("c")), st("d")])


STALE: list[tuple[str, Callable[[], Saga[Any]], list[Event], Event, str]] = [
    ("duplicate-started", three_steps, [STARTED], STARTED, "already started"),
    (
        "duplicate-step-succeeded",
        three_steps,
        [STARTED, ok("a")],
        ok("a"),
        r"success for step 'a' which is succeeded \(stale or duplicate\)",
    ),
    (
        "duplicate-step-succeeded-in-parallel-stage",
        three_steps,
        [STARTED, ok("a"), ok("b")],
        ok("b"),
        r"success for step 'b' which is succeeded",
    ),
    (
        "success-for-unknown-step",
        three_steps,
        [STARTED],
        ok("zzz"),
        r"success for unknown step 'zzz'",
    ),
    (
        "failure-for-unknown-step",
        three_steps,
        [STARTED],
        fail("zzz"),
        r"failure for unknown step 'zzz'",
    ),
    (
        "success-for-step-not-started",
        three_steps,
        [STARTED],
        ok("d"),
        r"success for step 'd' which is pending",
    ),
    (
        "success-before-started",
        three_steps,
        [],
        ok("a"),
        r"success for step 'a' which is pending",
    ),
    (
        "failure-after-success",
        three_steps,
        [STARTED, ok("a")],
        fail("a"),
        r"failure for step 'a' which is succeeded",
    ),
    (
        "duplicate-failure",
        three_steps,
        [STARTED, ok("a"), fail("b")],
        fail("b"),
        r"failure for step 'b' which is failed",
    ),
    (
        "compensation-success-while-running",
        three_steps,
        [STARTED, ok("a")],
        cok("a"),
        r"compensation success for step 'a' which is not being compensated",
    ),
    (
        "compensation-failure-while-running",
        three_steps,
        [STARTED, ok("a")],
        cfail("a"),
        r"compensation failure for step 'a' which is not being compensated",
    ),
    (
        "compensation-success-while-siblings-in-flight",
        three_steps,
        [STARTED, ok("a"), fail("b")],
        cok("a"),
        r"compensation success for step 'a' which is not being compensated",
    ),
    (
        "compensation-success-for-step-not-at-queue-head",
        lambda: Saga("order", [st("a"), st("b"), st("c")]),
        [STARTED, ok("a"), ok("b"), fail("c")],
        cok("a"),
        r"compensation success for step 'a' which is not being compensated",
    ),
    (
        "duplicate-compensation-success",
        lambda: Saga("order", [st("a"), st("b"), st("c")]),
        [STARTED, ok("a"), ok("b"), fail("c"), cok("b")],
        cok("b"),
        r"compensation success for step 'b' which is not being compensated",
    ),
    (
        "compensation-for-unknown-step",
        lambda: Saga("order", [st("a"), st("b")]),
        [STARTED, ok("a"), fail("b")],
        cok("zzz"),
        r"compensation success for step 'zzz' which is not being compensated",
    ),
]


@pytest.mark.parametrize(
    ("saga", "prefix", "event", "match"),
    [pytest.param(s, p, e, m, id=i) for i, s, p, e, m in STALE],
)
def test_stale_or_duplicate_event_raises(
    saga: Callable[[], Saga[Any]], prefix: list[Event], event: Event, match: str
) -> None:
    definition = saga()
    state = initial_state(definition, "saga-42")
    for e in prefix:
        state = decide(definition, state, e).state
    with pytest.raises(StateError, match=match) as info:
        decide(definition, state, event)
    assert "saga saga-42" in str(info.value)


TERMINAL_RUNS: dict[SagaStatus, tuple[Callable[[], Saga[Any]], list[Event]]] = {
    SagaStatus.SUCCEEDED: (
        lambda: Saga("order", [st("a"), st("b")]),
        [STARTED, ok("a"), ok("b")],
    ),
    SagaStatus.COMPENSATED: (
        lambda: Saga("order", [st("a"), st("b")]),
        [STARTED, ok("a"), fail("b"), cok("a")],
    ),
    SagaStatus.FAILED: (
        lambda: Saga("order", [st("a"), pivot("b"), st("c", comp=False)]),
        [STARTED, ok("a"), ok("b"), fail("c")],
    ),
    SagaStatus.COMPENSATION_FAILED: (
        lambda: Saga("order", [st("a"), st("b")]),
        [STARTED, ok("a"), fail("b"), cfail("a")],
    ),
}

LATE_EVENTS: list[Event] = [
    STARTED,
    RESUMED,
    ok("a"),
    ok("b"),
    fail("a"),
    fail("b", retryable=True),
    cok("a"),
    cfail("a", retryable=True),
]


@pytest.mark.parametrize("status", list(TERMINAL_RUNS), ids=str)
@pytest.mark.parametrize("event", LATE_EVENTS, ids=lambda e: type(e).__name__)
def test_any_event_after_terminal_raises(status: SagaStatus, event: Event) -> None:
    saga_factory, events = TERMINAL_RUNS[status]
    saga = saga_factory()
    state = initial_state(saga, "saga-7")
    for e in events:
        state = decide(saga, state, e).state
    assert state.status is status
    with pytest.raises(StateError, match=rf"saga saga-7: already {status.value}"):
        decide(saga, state, event)


def test_with_step_keeps_every_field_of_both_values() -> None:
    """with_step builds StepState and SagaState by hand: a field added to either
    class must be carried over, or this test fails."""
    from dataclasses import fields  # noqa: PLC0415

    from sagakit.engine.state import SagaState, StepState  # noqa: PLC0415

    base = SagaState(
        saga_id="s",
        saga_name="n",
        stage=3,
        completed=("a",),
        compensations=("a",),
        failed_step="a",
        compensation_step="a",
    )
    after = base.with_step("b", attempts=2)
    for f in fields(SagaState):
        if f.name != "steps":
            assert getattr(after, f.name) == getattr(base, f.name), f.name
    marker = object()
    for f in fields(StepState):
        changed = base.with_step("b", **{f.name: marker})
        assert getattr(changed.step("b"), f.name) is marker, f.name


def test_but_sets_each_field_of_both_values_by_name() -> None:
    """``but`` passes fields by position: each change must land in the field
    it names and leave the others as they were (a reordered or added field
    fails here)."""
    from dataclasses import fields  # noqa: PLC0415

    from sagakit.engine.state import SagaState, StepState  # noqa: PLC0415

    base_step = StepState()
    base = SagaState(saga_id="s", saga_name="n")
    for value, kind in ((base, SagaState), (base_step, StepState)):
        names = [f.name for f in fields(kind)]
        for name in names:
            if name in ("saga_id", "saga_name"):
                continue
            marker = object()
            changed = value.but(**{name: marker})  # type: ignore[attr-defined]
            assert getattr(changed, name) is marker, name
            for other in names:
                if other != name:
                    assert getattr(changed, other) == getattr(value, other), other
        with pytest.raises(TypeError, match="no field"):
            value.but(nonsense=1)  # type: ignore[attr-defined]
