"""Type-checked by mypy (see pyproject), never run: dependencies, parallel
strategies, the rollback policy and the result's pivot fields type well."""

from __future__ import annotations

from pydantic import BaseModel

from sagakit import (
    ErrorInfo,
    Orchestrator,
    Parallel,
    Saga,
    SagaResult,
    SQLiteStore,
    Step,
)


class Order(BaseModel):
    amount: int = 1


async def act(ctx: Order) -> str:
    return "ref"


async def undo(ctx: Order) -> None:
    return None


shipping: Saga[Order] = Saga(
    "shipping",
    [
        Step("reserve", act, compensate=undo),
        Parallel(
            Step("pack", act, compensate=undo),
            Step("pay", act, compensate=undo),
            on_failure="fail_fast",
            grace=2.0,
        ),
        Step("invoice", act, after=()),
        Step("ship", act, pivot=True, after=("pack", "pay", "invoice")),
    ],
    context=Order,
    on_compensation_failure="continue",
)


async def use() -> tuple[bool, tuple[str, ...], list[ErrorInfo]]:
    orchestrator = Orchestrator(SQLiteStore(":memory:"), [shipping])
    result: SagaResult[Order] = await orchestrator.run(shipping, Order())
    errors = [error for _, error in result.compensation_errors]
    return result.pivot_reached, result.committed_past_pivot, errors
