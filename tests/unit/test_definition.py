from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from sagakit.definition import (
    COMPENSATION_RETRY,
    NO_RETRY,
    DictContext,
    Parallel,
    RetryPolicy,
    Saga,
    Step,
)
from sagakit.errors import DefinitionError, FatalError, SagaError

# -- dummy callables ---------------------------------------------------------


def act(ctx: Any) -> None:
    return None


def undo(ctx: Any) -> None:
    return None


def undo_with_result(ctx: Any, result: Any) -> None:
    return None


def step(name: str, *, comp: bool = True, **kw: Any) -> Step:
    return Step(name, act, undo if comp else None, **kw)


def pivot(name: str) -> Step:
    return Step(name, act, pivot=True)


class OrderContext(BaseModel):
    order_id: str = "o-1"


# -- invalid sagas: the message names the saga and the step ------------------


SAGA_ERRORS: list[tuple[str, Callable[[], object], tuple[str, ...]]] = [
    (
        "duplicate-sequential",
        lambda: Saga("order", [step("reserve"), step("reserve")]),
        ("saga 'order'", "duplicate step name 'reserve'"),
    ),
    (
        "duplicate-across-parallel-groups",
        lambda: Saga(
            "order",
            [Parallel(step("a"), step("b")), Parallel(step("c"), step("b"))],
        ),
        ("saga 'order'", "duplicate step name 'b'"),
    ),
    (
        "duplicate-inside-one-parallel-group",
        lambda: Saga("order", [Parallel(step("a"), step("a"))]),
        ("saga 'order'", "duplicate step name 'a'"),
    ),
    (
        "duplicate-step-then-parallel",
        lambda: Saga("order", [step("a"), Parallel(step("b"), step("a"))]),
        ("saga 'order'", "duplicate step name 'a'"),
    ),
    (
        "empty-list",
        lambda: Saga("order", []),
        ("saga 'order' is empty",),
    ),
    (
        "empty-tuple",
        lambda: Saga("order", ()),
        ("saga 'order' is empty",),
    ),
    (
        "compensation-after-pivot",
        lambda: Saga("order", [step("a"), pivot("charge"), step("ship")]),
        ("saga 'order'", "step 'ship'", "after the pivot 'charge'"),
    ),
    (
        "compensation-after-pivot-in-parallel",
        lambda: Saga(
            "order",
            [
                pivot("charge"),
                Parallel(step("mail", comp=False), step("ship")),
            ],
        ),
        ("saga 'order'", "step 'ship'", "after the pivot 'charge'"),
    ),
    (
        "compensation-two-stages-after-pivot",
        lambda: Saga(
            "order",
            [pivot("charge"), step("mail", comp=False), step("ship")],
        ),
        ("saga 'order'", "step 'ship'", "after the pivot 'charge'"),
    ),
    (
        "two-pivots",
        lambda: Saga("order", [pivot("p1"), step("x", comp=False), pivot("p2")]),
        ("saga 'order'", "two pivots", "'p1'", "'p2'"),
    ),
    (
        "context-not-a-class",
        lambda: Saga("order", [step("a")], context=OrderContext()),  # type: ignore[arg-type]
        ("saga 'order'", "context must be a pydantic BaseModel class"),
    ),
    (
        "context-dict",
        lambda: Saga("order", [step("a")], context=dict),  # type: ignore[type-var]
        ("saga 'order'", "context must be a pydantic BaseModel class"),
    ),
    (
        "context-dataclass",
        lambda: Saga(
            "order",
            [step("a")],
            context=dataclasses.make_dataclass("Ctx", ["x"]),
        ),
        ("saga 'order'", "context must be a pydantic BaseModel class"),
    ),
    (
        "steps-not-a-list",
        lambda: Saga("order", step("a")),  # type: ignore[arg-type]
        ("saga 'order'", "steps must be a list"),
    ),
    (
        "steps-a-generator",
        lambda: Saga("order", (s for s in [step("a")])),  # type: ignore[arg-type]
        ("saga 'order'", "steps must be a list"),
    ),
    (
        "item-not-a-step",
        lambda: Saga("order", [step("a"), "b"]),  # type: ignore[list-item]
        ("saga 'order'", "steps must be Step or Parallel", "'b'"),
    ),
]


@pytest.mark.parametrize(
    ("build", "fragments"),
    [pytest.param(b, f, id=i) for i, b, f in SAGA_ERRORS],
)
def test_invalid_saga_fails_at_definition_time(
    build: Callable[[], object], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(DefinitionError) as info:
        build()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_definition_error_is_a_value_error_and_a_saga_error() -> None:
    with pytest.raises(ValueError, match="is empty"):
        Saga("order", [])
    with pytest.raises(SagaError, match="is empty"):
        Saga("order", [])


# -- invalid steps: raised when the Step/Parallel is built, naming the step -------


def no_args() -> None:
    return None


def two_args(ctx: Any, other: Any) -> None:
    return None


def three_args(ctx: Any, result: Any, other: Any) -> None:
    return None


def keyword_only(*, ctx: Any) -> None:
    return None


def ctx_and_required_keyword(ctx: Any, *, flag: bool) -> None:
    return None


STEP_ERRORS: list[tuple[str, Callable[[], object], tuple[str, ...]]] = [
    (
        "pivot-in-parallel",
        lambda: Parallel(step("a"), pivot("charge")),
        ("step 'charge'", "pivot cannot run in a parallel group"),
    ),
    (
        "pivot-alone-in-parallel",
        lambda: Parallel(pivot("charge")),
        ("step 'charge'", "pivot cannot run in a parallel group"),
    ),
    (
        "pivot-with-compensation",
        lambda: Step("charge", act, undo, pivot=True),
        ("step 'charge'", "pivot", "cannot have a compensation"),
    ),
    (
        "compensate-on-failure-without-compensation",
        lambda: Step("charge", act, compensate_on_failure=True),
        ("step 'charge'", "compensate_on_failure=True needs a compensation"),
    ),
    (
        "action-not-callable",
        lambda: Step("charge", 42),  # type: ignore[arg-type]
        ("step 'charge'", "action must be callable"),
    ),
    (
        "action-none",
        lambda: Step("charge", None),  # type: ignore[arg-type]
        ("step 'charge'", "action must be callable"),
    ),
    (
        "compensate-not-callable",
        lambda: Step("charge", act, "refund"),  # type: ignore[arg-type]
        ("step 'charge'", "compensate must be callable"),
    ),
    (
        "action-no-args",
        lambda: Step("charge", no_args),
        ("step 'charge'", "action must take exactly one positional argument"),
    ),
    (
        "action-two-args",
        lambda: Step("charge", two_args),
        ("step 'charge'", "action must take exactly one positional argument"),
    ),
    (
        "action-keyword-only",
        lambda: Step("charge", keyword_only),
        ("step 'charge'", "action must take exactly one positional argument"),
    ),
    (
        "action-required-keyword",
        lambda: Step("charge", ctx_and_required_keyword),
        ("step 'charge'", "action must take exactly one positional argument"),
    ),
    (
        "compensate-no-args",
        lambda: Step("charge", act, no_args),
        ("step 'charge'", "compensate must take (ctx) or (ctx, result)"),
    ),
    (
        "compensate-three-args",
        lambda: Step("charge", act, three_args),
        ("step 'charge'", "compensate must take (ctx) or (ctx, result)"),
    ),
    (
        "compensate-keyword-only",
        lambda: Step("charge", act, keyword_only),
        ("step 'charge'", "compensate must take (ctx) or (ctx, result)"),
    ),
    (
        "timeout-zero",
        lambda: Step("charge", act, timeout=0),
        ("step 'charge'", "timeout must be > 0", "0"),
    ),
    (
        "timeout-negative",
        lambda: Step("charge", act, timeout=-1.5),
        ("step 'charge'", "timeout must be > 0", "-1.5"),
    ),
    (
        "timeout-nan",
        lambda: Step("charge", act, timeout=math.nan),
        ("step 'charge'", "timeout must be > 0"),
    ),
    (
        "compensation-timeout-zero",
        lambda: Step("charge", act, undo, compensation_timeout=0.0),
        ("step 'charge'", "compensation_timeout must be > 0"),
    ),
    (
        "inline-sync-action-with-timeout",
        lambda: Step("charge", act, blocking=False, timeout=1),
        ("step 'charge'", "blocking=False", "timeout cannot"),
    ),
    (
        "inline-sync-compensation-with-timeout",
        lambda: Step("charge", act, undo, blocking=False, compensation_timeout=1),
        ("step 'charge'", "compensation_timeout cannot"),
    ),
    (
        "retry-not-a-policy",
        lambda: Step("charge", act, retry=3),  # type: ignore[arg-type]
        ("step 'charge'", "retry policies must be RetryPolicy"),
    ),
    (
        "compensation-retry-not-a-policy",
        lambda: Step("charge", act, undo, compensation_retry={"attempts": 3}),  # type: ignore[arg-type]
        ("step 'charge'", "retry policies must be RetryPolicy"),
    ),
    (
        "empty-parallel",
        Parallel,
        ("Parallel() needs at least one step",),
    ),
    (
        "parallel-of-non-step",
        lambda: Parallel(step("a"), "b"),  # type: ignore[arg-type]
        ("Parallel() takes Step objects", "'b'"),
    ),
]


@pytest.mark.parametrize(
    ("build", "fragments"),
    [pytest.param(b, f, id=i) for i, b, f in STEP_ERRORS],
)
def test_invalid_step_fails_at_definition_time(
    build: Callable[[], object], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(DefinitionError) as info:
        build()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


BAD_NAMES: list[object] = [
    "",
    "1st",
    "-dash",
    ".dot",
    "has space",
    "slash/inside",
    "colon:inside",
    "x" * 101,
    "é",
    None,
    42,
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_step_name(name: object) -> None:
    with pytest.raises(DefinitionError, match=r"^Step name .* is invalid") as info:
        Step(name, act)  # type: ignore[arg-type]
    assert repr(name) in str(info.value)


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_saga_name(name: object) -> None:
    with pytest.raises(DefinitionError, match=r"^Saga name .* is invalid") as info:
        Saga(name, [step("a")])  # type: ignore[arg-type]
    assert repr(name) in str(info.value)


@pytest.mark.parametrize(
    "name", ["a", "_", "A1", "order.reserve-stock_v2", "x" * 100, "_private"]
)
def test_good_names(name: str) -> None:
    assert Step(name, act).name == name
    assert Saga(name, [step("a")]).name == name


# -- accepted callables --------------------------------------------------------


async def async_act(ctx: Any) -> None:
    return None


def act_with_default(ctx: Any, extra: int = 1) -> None:
    return None


def act_with_kwargs(ctx: Any, **options: Any) -> None:
    return None


def act_varargs(*args: Any) -> None:
    return None


def two_then_ctx(prefix: str, ctx: Any) -> None:
    return None


class Service:
    def run(self, ctx: Any) -> None:
        return None

    def undo(self, ctx: Any, result: Any) -> None:
        return None


class CallableAction:
    def __call__(self, ctx: Any) -> None:
        return None


@pytest.mark.parametrize(
    "action",
    [
        act,
        async_act,
        act_with_default,
        act_with_kwargs,
        act_varargs,
        lambda ctx: None,
        Service().run,
        CallableAction(),
        functools.partial(two_then_ctx, "prefix"),
        print,  # a builtin that takes *args
    ],
    ids=lambda f: getattr(f, "__name__", type(f).__name__),
)
def test_actions_taking_one_positional_argument_are_accepted(
    action: Callable[..., Any],
) -> None:
    assert Step("a", action).action is action


@pytest.mark.parametrize(
    ("compensate", "takes_result"),
    [
        (undo, False),
        (undo_with_result, True),
        (act_with_default, True),
        (act_varargs, True),
        (Service().undo, True),
        (CallableAction(), False),
        (lambda ctx: None, False),
        (lambda ctx, result: None, True),
    ],
)
def test_compensation_arity_decides_whether_it_gets_the_result(
    compensate: Callable[..., Any], takes_result: bool
) -> None:
    s = Step("a", act, compensate)
    assert s.compensation_takes_result is takes_result


def test_step_without_compensation_does_not_take_result() -> None:
    assert Step("a", act).compensation_takes_result is False


def test_is_async() -> None:
    assert Step("a", async_act).is_async is True
    assert Step("a", act).is_async is False


def test_step_is_frozen() -> None:
    s = step("a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "b"  # type: ignore[misc]


def test_step_defaults() -> None:
    s = Step("a", act)
    assert s.compensate is None
    assert s.retry is NO_RETRY
    assert s.compensation_retry is COMPENSATION_RETRY
    assert s.timeout is None
    assert s.pivot is False
    assert s.compensate_on_failure is False


# -- valid shapes ----------------------------------------------------------


def test_sequential_saga_shape() -> None:
    a, b, c = step("a"), step("b"), step("c", comp=False)
    saga: Saga[Any] = Saga("order", [a, b, c])
    assert saga.name == "order"
    assert saga.stages == ((a,), (b,), (c,))
    assert saga.step_names == ("a", "b", "c")
    assert list(saga) == [a, b, c]
    assert saga.pivot_stage is None
    assert saga.context is DictContext
    assert saga.step("b") is b
    assert saga.has_step("c")
    assert not saga.has_step("d")
    assert repr(saga) == "Saga('order': a -> b -> c)"


def test_parallel_saga_shape() -> None:
    a, b, c, d = step("a"), step("b"), step("c"), step("d")
    saga: Saga[Any] = Saga("order", (a, Parallel(b, c), d))
    assert saga.stages == ((a,), (b, c), (d,))
    assert saga.step_names == ("a", "b", "c", "d")
    assert Parallel(b, c).steps == (b, c)
    assert repr(saga) == "Saga('order': a -> [b | c] -> d)"


@pytest.mark.parametrize(
    ("items", "pivot_stage"),
    [
        (lambda: [pivot("p")], 0),
        (lambda: [pivot("p"), step("x", comp=False)], 0),
        (lambda: [step("a"), pivot("p")], 1),
        (lambda: [Parallel(step("a"), step("b")), pivot("p")], 1),
        (
            lambda: [
                step("a"),
                Parallel(step("b"), step("c", compensate_on_failure=True)),
                pivot("p"),
                Parallel(step("x", comp=False), step("y", comp=False)),
                step("z", comp=False, retry=RetryPolicy(attempts=5)),
            ],
            2,
        ),
    ],
)
def test_pivot_stage_is_recorded(
    items: Callable[[], list[Step | Parallel]], pivot_stage: int
) -> None:
    assert Saga("order", items()).pivot_stage == pivot_stage


def test_custom_context_class() -> None:
    saga = Saga("order", [step("a")], context=OrderContext)
    assert saga.context is OrderContext


def test_unknown_step_lookup_names_saga_and_step() -> None:
    saga: Saga[Any] = Saga("order", [step("a")])
    with pytest.raises(DefinitionError, match=r"saga 'order' has no step 'nope'"):
        saga.step("nope")


def test_dict_context_accepts_any_fields() -> None:
    ctx = DictContext.model_validate({"x": 1, "y": [1, 2]})
    assert ctx.model_dump() == {"x": 1, "y": [1, 2]}


# -- RetryPolicy -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"attempts": 0}, "attempts must be >= 1, got 0"),
        ({"attempts": -3}, "attempts must be >= 1, got -3"),
        ({"attempts": True}, "attempts must be an int, got True"),
        ({"attempts": 2.0}, "attempts must be an int, got 2.0"),
        ({"attempts": "3"}, "attempts must be an int, got '3'"),
        ({"backoff": -0.1}, "backoff and max_backoff must be >= 0"),
        ({"max_backoff": -1}, "backoff and max_backoff must be >= 0"),
        ({"backoff": math.nan}, "backoff and max_backoff must be >= 0"),
        ({"max_backoff": math.nan}, "backoff and max_backoff must be >= 0"),
        ({"multiplier": 0.5}, "multiplier must be >= 1, got 0.5"),
        ({"multiplier": math.nan}, "multiplier must be >= 1"),
        ({"jitter": -0.1}, "jitter must be within [0, 1], got -0.1"),
        ({"jitter": 1.5}, "jitter must be within [0, 1], got 1.5"),
        ({"jitter": math.nan}, "jitter must be within [0, 1]"),
        ({"retry_on": (42,)}, "take exception classes, got 42"),
        ({"retry_on": (int,)}, "take exception classes, got <class 'int'>"),
        ({"give_up_on": ("ValueError",)}, "take exception classes, got 'ValueError'"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else "",
)
def test_bad_retry_policy(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(DefinitionError) as info:
        RetryPolicy(**kwargs)
    assert fragment in str(info.value)
    assert str(info.value).startswith("RetryPolicy")


@pytest.mark.parametrize(
    ("policy", "failed_attempt", "sample", "expected"),
    [
        # backoff * multiplier ** (n - 1), capped, shortened by jitter * sample
        (RetryPolicy(backoff=1.0, multiplier=2.0, jitter=0.0), 1, 0.9, 1.0),
        (RetryPolicy(backoff=1.0, multiplier=2.0, jitter=0.0), 2, 0.9, 2.0),
        (RetryPolicy(backoff=1.0, multiplier=2.0, jitter=0.0), 4, 0.0, 8.0),
        (RetryPolicy(backoff=0.5, multiplier=3.0, jitter=0.0), 3, 0.0, 4.5),
        (RetryPolicy(backoff=1.0, multiplier=1.0, jitter=0.0), 7, 0.0, 1.0),
        (
            RetryPolicy(backoff=1.0, multiplier=2.0, max_backoff=5.0, jitter=0),
            4,
            0,
            5.0,
        ),
        (
            RetryPolicy(backoff=1.0, multiplier=2.0, max_backoff=5.0, jitter=0),
            30,
            0,
            5.0,
        ),
        (RetryPolicy(backoff=4.0, multiplier=2.0, jitter=0.5), 1, 0.0, 4.0),
        (RetryPolicy(backoff=4.0, multiplier=2.0, jitter=0.5), 1, 0.5, 3.0),
        (RetryPolicy(backoff=4.0, multiplier=2.0, jitter=0.5), 2, 0.25, 7.0),
        (RetryPolicy(backoff=4.0, multiplier=2.0, jitter=1.0), 1, 0.75, 1.0),
        (RetryPolicy(backoff=8.0, max_backoff=2.0, jitter=1.0), 1, 0.5, 1.0),
        (RetryPolicy(backoff=0.0, jitter=0.5), 3, 0.5, 0.0),
    ],
)
def test_retry_delay(
    policy: RetryPolicy, failed_attempt: int, sample: float, expected: float
) -> None:
    assert policy.delay(failed_attempt, sample) == pytest.approx(expected)


def test_retry_delay_stays_within_jitter_window() -> None:
    policy = RetryPolicy(backoff=2.0, multiplier=2.0, jitter=0.5)
    for n in range(1, 5):  # below max_backoff (30)
        full = 2.0 * 2.0 ** (n - 1)
        for sample in (0.0, 0.3, 0.999):
            assert full * 0.5 <= policy.delay(n, sample) <= full


class Transient(Exception):
    pass


class Fatal(Transient):
    pass


@pytest.mark.parametrize(
    ("policy", "error", "expected"),
    [
        (RetryPolicy(), ValueError("x"), True),
        (RetryPolicy(), KeyboardInterrupt(), False),
        (RetryPolicy(retry_on=(Transient,)), Transient(), True),
        (RetryPolicy(retry_on=(Transient,)), Fatal(), True),
        (RetryPolicy(retry_on=(Transient,)), ValueError(), False),
        (RetryPolicy(retry_on=(Transient,), give_up_on=(Fatal,)), Fatal(), False),
        (RetryPolicy(retry_on=(Transient,), give_up_on=(Fatal,)), Transient(), True),
        (RetryPolicy(give_up_on=(ValueError,)), ValueError(), False),
        (RetryPolicy(give_up_on=(ValueError,)), TypeError(), True),
        (RetryPolicy(retry_on=()), ValueError(), False),
        (RetryPolicy(), FatalError("declined"), False),  # never retried
        (RetryPolicy(retry_on=(FatalError,)), FatalError("declined"), False),
    ],
)
def test_retries(policy: RetryPolicy, error: BaseException, expected: bool) -> None:
    assert policy.retries(error) is expected


def test_default_policies() -> None:
    assert NO_RETRY.attempts == 1
    assert COMPENSATION_RETRY.attempts == 3
    assert COMPENSATION_RETRY.backoff == 0.05
    assert RetryPolicy() == NO_RETRY
    assert RetryPolicy(attempts=5, jitter=1, backoff=0).attempts == 5


@pytest.mark.parametrize("bad", ["5", True, None.__class__])
def test_timeout_must_be_a_number(bad: object) -> None:
    with pytest.raises(DefinitionError, match="timeout must be > 0"):
        Step("s", lambda ctx: None, timeout=bad)  # type: ignore[arg-type]


async def _async_act(ctx: Any) -> None:
    return None


def test_blocking_false_allows_timeouts_on_async_functions() -> None:
    built = Step("charge", _async_act, undo, blocking=False, timeout=1)
    assert built.blocking is False
    assert Step("charge", act, blocking=False).timeout is None
