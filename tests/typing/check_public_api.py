"""Type-checked by mypy (see pyproject), never run: the public API must type well."""

from __future__ import annotations

from pydantic import BaseModel

from sagakit import (
    Orchestrator,
    Parallel,
    RetryPolicy,
    Saga,
    SagaResult,
    SQLiteStore,
    Step,
)


class Trip(BaseModel):
    nights: int = 1


async def book(ctx: Trip) -> str:
    return "ref"


def cancel(ctx: Trip, ref: str) -> None:
    return None


trip: Saga[Trip] = Saga(
    "trip",
    [
        Parallel(Step("flight", book, compensate=cancel)),
        Step("hotel", book, retry=RetryPolicy(attempts=2), timeout=1.0),
    ],
    context=Trip,
)


async def use() -> int:
    orchestrator = Orchestrator(SQLiteStore(":memory:"), [trip])
    result: SagaResult[Trip] = await orchestrator.run(trip, Trip(nights=2))
    return result.context.nights
