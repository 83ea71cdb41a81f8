"""Type-checked by mypy (see pyproject), never run: the public API must type well."""

from __future__ import annotations

from pydantic import BaseModel

from sagakit import (
    Orchestrator,
    Parallel,
    Results,
    RetryPolicy,
    Saga,
    SagaResult,
    SQLiteStore,
    Step,
    SubSaga,
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


class Holiday(BaseModel):
    travellers: int = 2


def trip_of(holiday: Holiday) -> Trip:
    return Trip(nights=holiday.travellers)


def nights(ctx: Trip, results: Results) -> int:
    return ctx.nights + len(results)


holiday: Saga[Holiday] = Saga(
    "holiday",
    [
        Step("trip", SubSaga(trip, context=trip_of, output=nights)),
        Step("again", SubSaga(trip, context=lambda h: {"nights": 3})),
    ],
    context=Holiday,
)
