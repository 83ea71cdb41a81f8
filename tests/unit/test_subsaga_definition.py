"""Sub-saga steps at definition time: what they may have, what they become,
and sagas that would contain themselves."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import DefinitionError, Parallel, RetryPolicy, Saga, Step, SubSaga
from sagakit.asyncapi.diagram import mermaid
from sagakit.definition import Remote
from sagakit.runtime.registry import Registry


class Pay(BaseModel):
    amount: int = 0


def act(ctx: Any) -> None:
    return None


def undo(ctx: Any) -> None:
    return None


def child(name: str = "payment", *, pivot: bool = False, version: int = 1) -> Saga[Any]:
    steps = [Step("auth", act, compensate=undo), Step("capture", act, pivot=pivot)]
    return Saga(name, steps, context=Pay, version=version)


def test_the_rollback_of_the_child_is_the_step_compensation() -> None:
    sub = SubSaga(child(), context=lambda ctx: Pay(amount=3))
    step = Step("pay", sub)
    assert step.is_sub_saga
    assert step.rolls_back_child
    assert step.compensate is sub
    assert not step.is_remote
    assert not step.compensation_is_remote


def test_a_child_with_a_pivot_makes_the_step_not_compensated() -> None:
    step = Step("pay", SubSaga(child(pivot=True)))
    assert step.compensate is None
    assert not step.rolls_back_child
    own = Step("pay", SubSaga(child(pivot=True)), compensate=undo)
    assert own.compensate is undo  # a semantic undo, run instead
    remote = Step("pay", SubSaga(child(pivot=True)), compensate=Remote("pay.refund"))
    assert remote.compensation_is_remote


def test_a_pivot_sub_saga_step_has_no_compensation() -> None:
    step = Step("pay", SubSaga(child()), pivot=True)
    assert step.compensate is None


def test_the_step_can_be_rebuilt_with_its_own_child_rollback() -> None:
    sub = SubSaga(child())
    step = Step("pay", sub)
    again = Step("pay", sub, compensate=step.compensate)
    assert again.rolls_back_child
    with pytest.raises(DefinitionError, match="another sub-saga"):
        Step("pay", sub, compensate=SubSaga(child()))
    pivoted = SubSaga(child(pivot=True))
    with pytest.raises(DefinitionError, match="cannot be rolled back"):
        Step("pay", pivoted, compensate=pivoted)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"timeout": 3}, "no timeout"),
        ({"compensation_timeout": 3}, "no compensation_timeout"),
        ({"retry": RetryPolicy(attempts=3)}, "not retried"),
        ({"compensation_retry": RetryPolicy(attempts=1)}, "rollback of a child"),
        ({"compensate": undo, "compensate_on_failure": True}, "compensate_on_failure"),
        ({"output": Pay}, r"SubSaga\(\.\.\., output=\.\.\.\)"),
    ],
)
def test_what_a_sub_saga_step_cannot_have(options: dict[str, Any], match: str) -> None:
    with pytest.raises(DefinitionError, match=f"step 'pay' .*{match}"):
        Step("pay", SubSaga(child()), **options)


def test_sub_saga_arguments_are_checked() -> None:
    with pytest.raises(DefinitionError, match="takes a Saga"):
        SubSaga(act)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="context must take the parent"):
        SubSaga(child(), context=lambda a, b: Pay())  # type: ignore[arg-type,misc]
    with pytest.raises(DefinitionError, match="output must take"):
        SubSaga(child(), output=lambda a, b, c: None)
    assert SubSaga(child(), output=lambda ctx, results: 1).output_wants_results
    assert not SubSaga(child(), output=lambda ctx: 1).output_wants_results
    assert SubSaga(child(), context=lambda ctx, results: {}).context_wants_results
    with pytest.raises(DefinitionError, match="output must take"):
        SubSaga(child(), output=lambda ctx, other: 1)  # results only by name


def test_a_saga_that_contains_itself_is_refused() -> None:
    inner = Saga("order", [Step("x", act)])
    middle = Saga("billing", [Step("pay", SubSaga(inner))])
    with pytest.raises(
        DefinitionError,
        match=r"saga 'order' contains itself: order\.bill -> billing\.pay -> order",
    ):
        Saga("order", [Step("first", act), Step("bill", SubSaga(middle))])
    with pytest.raises(DefinitionError, match=r"order\.again -> order"):
        Saga("order", [Step("again", SubSaga(inner))])


def test_children_and_family() -> None:
    payment = child()
    billing = Saga("billing", [Step("pay", SubSaga(payment)), Step("mail", act)])
    order = Saga(
        "order",
        [
            Parallel(Step("bill", SubSaga(billing)), Step("pay", SubSaga(payment))),
            Step("ship", act),
        ],
    )
    assert order.children == {"bill": billing, "pay": payment}
    assert order.family == (billing, payment)
    registry = Registry([order])
    assert sorted(registry.names()) == ["billing", "order", "payment"]


def test_a_sub_saga_after_the_pivot_is_never_rolled_back() -> None:
    saga = Saga(
        "order",
        [Step("charge", act, pivot=True), Step("ship", SubSaga(child()))],
    )
    assert saga.step("ship").rolls_back_child  # allowed: never compensated


def test_the_fingerprint_names_the_child_and_its_version() -> None:
    def order(payment: Saga[Any]) -> Saga[Any]:
        return Saga("order", [Step("pay", SubSaga(payment))])

    one, same = order(child()), order(child())
    assert one.fingerprint == same.fingerprint
    assert order(child(version=2)).fingerprint != one.fingerprint
    assert order(child("refunds")).fingerprint != one.fingerprint
    local = Saga("order", [Step("pay", act, compensate=undo)])
    assert local.fingerprint != one.fingerprint


def test_the_diagram_shows_the_child_and_its_rollback() -> None:
    saga = Saga(
        "order", [Step("reserve", act, compensate=undo), Step("pay", SubSaga(child()))]
    )
    drawn = mermaid(saga)
    assert "<b>pay</b><br/>sub-saga payment" in drawn
    assert "undo pay<br/>roll back payment" in drawn
