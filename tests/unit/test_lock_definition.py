"""Semantic lock declarations: checked when the saga is built, rendered from
the context and earlier results."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import DefinitionError, Lock, Parallel, Saga, Step


class Seat(BaseModel):
    flight: str
    seat: str
    extra: dict[str, Any] = {}


def act(ctx: object) -> None:
    return None


def saga_with(*steps: Step, context: type[BaseModel] = Seat) -> Saga[Any]:
    return Saga("booking", list(steps), context=context)


def test_a_template_string_is_a_lock_waiting_until_the_end() -> None:
    step = Step("reserve", act, locks=["seat:{ctx.flight}:{ctx.seat}"])
    assert step.lock_specs == (Lock("seat:{ctx.flight}:{ctx.seat}"),)
    lock = step.lock_specs[0]
    assert (lock.mode, lock.timeout, lock.until) == ("wait", None, None)
    assert lock.fields == (("ctx", "flight"), ("ctx", "seat"))
    saga = saga_with(step, Step("pay", act))
    assert saga.lock_steps == frozenset({"reserve"})
    assert saga_with(Step("pay", act)).lock_steps == frozenset()


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("seat:{flight}", "must be {ctx.<field>...}"),
        ("seat:{ctx}", "must be {ctx.<field>...}"),
        ("seat:{ctx.seat!r}", "format spec or conversion"),
        ("seat:{ctx.seat:>4}", "format spec or conversion"),
        ("seat:{ctx[seat]}", "must be {ctx.<field>...}"),
        ("seat:{}", "must be {ctx.<field>...}"),
        ("seat:{ctx.seat", "malformed"),
        ("  ", "non-empty template"),
    ],
)
def test_a_bad_template_is_refused_naming_the_step(key: str, why: str) -> None:
    with pytest.raises(DefinitionError, match="step 'reserve'") as caught:
        Step("reserve", act, locks=[key])
    assert why in str(caught.value)


@pytest.mark.parametrize(
    ("lock", "why"),
    [
        ({"mode": "block"}, "mode must be 'wait' or 'fail'"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0"),
        ({"timeout": True}, "timeout must be a number of seconds > 0"),
        ({"timeout": float("inf")}, "timeout must be a number of seconds > 0"),
        ({"mode": "fail", "timeout": 1}, "applies to mode='wait' only"),
        ({"until": 3}, "until must name a step"),
    ],
)
def test_bad_lock_options_are_refused(lock: dict[str, Any], why: str) -> None:
    with pytest.raises(DefinitionError, match=why):
        Step("reserve", act, locks=[Lock("seat:{ctx.seat}", **lock)])


@pytest.mark.parametrize("locks", ["seat:{ctx.seat}", Lock("k"), 3, [3]])
def test_locks_must_be_a_list_of_templates_or_locks(locks: Any) -> None:
    with pytest.raises(DefinitionError, match="step 'reserve': locks must be"):
        Step("reserve", act, locks=locks)


def test_until_names_the_step_itself_or_one_after_it() -> None:
    ok = saga_with(
        Step("reserve", act, locks=[Lock("seat:{ctx.seat}", until="pay")]),
        Step("pay", act, locks=[Lock("card:{ctx.flight}", until="pay")]),
    )
    assert ok.lock_steps == {"reserve", "pay"}
    with pytest.raises(DefinitionError, match="until names no step 'ship'"):
        saga_with(Step("reserve", act, locks=[Lock("k", until="ship")]))
    with pytest.raises(DefinitionError, match="must be this step or one that runs"):
        saga_with(
            Step("pay", act),
            Step("reserve", act, locks=[Lock("k", until="pay")]),
        )
    with pytest.raises(DefinitionError, match="must be this step or one that runs"):
        saga_with(  # a sibling in a parallel group does not run after it
            Parallel(Step("a", act, locks=[Lock("k", until="b")]), Step("b", act))
        )


def test_context_fields_are_checked_against_the_model() -> None:
    with pytest.raises(DefinitionError, match="Seat has no field 'row'"):
        saga_with(Step("reserve", act, locks=["seat:{ctx.row}"]))
    # a saga without a context model takes any field
    open_saga = Saga("open", [Step("reserve", act, locks=["seat:{ctx.row}"])])
    assert open_saga.lock_steps == {"reserve"}


def test_results_must_come_from_a_step_before() -> None:
    saga = saga_with(
        Step("quote", act),
        Step("reserve", act, locks=["seat:{results.quote.seat}"]),
    )
    assert saga.lock_steps == {"reserve"}
    with pytest.raises(DefinitionError, match=r"results\.pay must be the result"):
        saga_with(
            Step("reserve", act, locks=["card:{results.pay.card}"]),
            Step("pay", act),
        )
    with pytest.raises(DefinitionError, match=r"results\.reserve must be the result"):
        saga_with(Step("reserve", act, locks=["card:{results.reserve}"]))


def test_a_key_renders_from_the_context_and_the_results() -> None:
    lock = Lock("seat:{ctx.flight}:{ctx.extra.row}:{results.quote.price}")
    ctx = Seat(flight="F1", seat="2B", extra={"row": 7})
    assert lock.render(ctx, {"quote": {"price": 30}}) == "seat:F1:7:30"


@pytest.mark.parametrize(
    ("key", "missing"),
    [
        ("{ctx.extra.row}", "ctx.extra has no key 'row'"),
        ("{results.quote.price}", "results has no key 'quote'"),
        ("{ctx.flight.code}", "ctx.flight (str) has no 'code'"),
        ("{results.none}", "results.none is None"),
    ],
)
def test_a_key_that_names_nothing_cannot_render(key: str, missing: str) -> None:
    with pytest.raises(LookupError, match=re.escape(missing)):
        Lock(key).render(Seat(flight="F1", seat="2B"), {"none": None})
