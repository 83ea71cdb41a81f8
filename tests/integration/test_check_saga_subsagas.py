"""check_saga on sagas with sub-sagas: every shape passes at every failure
point and crash, and a runtime that mishandles children is caught."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import Parallel, RetryPolicy, Saga, SagaError, Step, SubSaga
from sagakit.definition import Remote
from sagakit.engine.state import ParentLink
from sagakit.ports.store import SagaRecord
from sagakit.runtime import children, subsaga
from sagakit.testing import CheckReport, check_saga


class Ctx(BaseModel):
    n: int = 1


async def ok(ctx: Ctx) -> int:
    return ctx.n


async def undo(ctx: Ctx) -> None:
    return None


def payment(
    name: str = "payment", *, pivot: bool = False, remote: bool = False
) -> Saga[Ctx]:
    charge = (
        Step(
            "charge",
            Remote("bank.charge"),
            compensate=Remote("bank.refund"),
            retry=RetryPolicy(attempts=2),
        )
        if remote
        else Step(
            "charge",
            ok,
            compensate=undo,
            compensation_retry=RetryPolicy(attempts=2),
        )
    )
    return Saga(
        name,
        [Step("auth", ok, compensate=undo), charge, Step("capture", ok, pivot=pivot)],
        context=Ctx,
    )


def order(name: str, middle: list[Step | Parallel], **options: Any) -> Saga[Ctx]:
    return Saga(
        name,
        [Step("reserve", ok, compensate=undo), *middle, Step("ship", ok)],
        context=Ctx,
        **options,
    )


SHAPES = {
    "a child": lambda: order("o", [Step("pay", SubSaga(payment()))]),
    "a child with a pivot": lambda: order(
        "o", [Step("pay", SubSaga(payment(pivot=True)))]
    ),
    "a child with its own undo": lambda: order(
        "o", [Step("pay", SubSaga(payment(pivot=True)), compensate=undo)]
    ),
    "children around the pivot": lambda: order(
        "o",
        [
            Step("pay", SubSaga(payment())),
            Step("charge", ok, pivot=True),
            Step("label", SubSaga(payment("labels"))),
        ],
    ),
    "a grandchild": lambda: order(
        "o",
        [
            Step(
                "bill",
                SubSaga(
                    Saga(
                        "billing",
                        [
                            Step("pay", SubSaga(payment())),
                            Step("invoice", ok, compensate=undo),
                        ],
                        context=Ctx,
                    )
                ),
            )
        ],
    ),
    "a child with remote steps": lambda: order(
        "o", [Step("pay", SubSaga(payment(remote=True)))]
    ),
    "a fail-fast group, compensations continue": lambda: order(
        "o",
        [
            Parallel(
                Step("pay", SubSaga(payment())),
                Step("pack", ok, compensate=undo),
                on_failure="fail_fast",
            )
        ],
        on_compensation_failure="continue",
    ),
    "a graph": lambda: Saga(
        "o",
        [
            Step("reserve", ok, compensate=undo),
            Step("pay", SubSaga(payment()), after=("reserve",)),
            Step("pack", ok, compensate=undo, after=("reserve",)),
            Step("ship", ok, after=("pay", "pack")),
        ],
        context=Ctx,
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_every_sub_saga_shape_passes(shape: str) -> None:
    report = await check_saga(SHAPES[shape](), Ctx)
    report.assert_ok()
    assert any(p.crash is not None for p in report.points)
    assert any("pay/" in str(p.label) or "bill/" in str(p.label) for p in report.points)


def rules(report: CheckReport) -> set[str]:
    return {v.rule for v in report.violations}


async def test_a_child_that_is_not_rolled_back_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def said_done(*args: Any) -> tuple[bool, None]:
        return True, None  # claims the child rolled back, asks nothing

    monkeypatch.setattr(subsaga, "_undo", said_done)
    report = await check_saga(SHAPES["a child"](), Ctx)
    assert not report.ok
    assert any(
        "in sub-saga pay: expected compensated, got succeeded" in v.detail
        for v in report.violations
    )


async def test_a_child_made_again_after_a_crash_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = iter(range(1, 1000))
    real = children.child_id

    def fresh(parent_id: str, step: str, attempt: int = 1) -> str:
        return real(parent_id, step, attempt + 1000 * next(made))

    async def nothing(
        driver: Any, parent: ParentLink, attempt: int
    ) -> SagaRecord | None:
        return None  # never finds the child it made before

    monkeypatch.setattr(children, "child_id", fresh)
    monkeypatch.setattr(children, "current", nothing)
    report = await check_saga(SHAPES["a child"](), Ctx, max_points=40)
    assert not report.ok  # a second child ran (and the first is never undone)


async def test_one_saga_as_a_sub_saga_in_two_places_is_refused() -> None:
    saga = order(
        "o",
        [Step("pay", SubSaga(payment())), Step("refund", SubSaga(payment()))],
    )
    with pytest.raises(SagaError, match="'payment' as a sub-saga at pay and at refund"):
        await check_saga(saga, Ctx)
