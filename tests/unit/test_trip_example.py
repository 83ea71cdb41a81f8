"""The trip example saga, run in-process on the in-memory harness."""

from __future__ import annotations

import asyncio

from sagakit import SagaResult, SagaStatus
from sagakit.examples.trip import (
    NoRoomsAvailable,
    TripContext,
    fully_booked_trip,
    happy_trip,
    trip_saga,
)
from sagakit.ports.store import HistoryEntry
from sagakit.testing import in_memory_orchestrator


def run(ctx: TripContext) -> tuple[SagaResult[TripContext], list[HistoryEntry]]:
    async def go() -> tuple[SagaResult[TripContext], list[HistoryEntry]]:
        orchestrator = in_memory_orchestrator([trip_saga])
        try:
            result = await orchestrator.run(trip_saga, ctx)
            return result, await orchestrator.store.history(result.saga_id)
        finally:
            await orchestrator.close()

    return asyncio.run(go())


def test_trip_succeeds_with_a_reference_per_booking() -> None:
    result, history = run(happy_trip())
    assert result.status is SagaStatus.SUCCEEDED
    assert result.results["book_flight"].startswith("FL-")
    assert result.results["book_hotel"].startswith("HT-")
    assert result.results["book_tours"].startswith("TR-")
    assert result.results["confirm_trip"].startswith("TRIP-")
    assert not [h for h in history if h.kind == "compensation"]


def test_no_rooms_compensates_flight_and_tours_together() -> None:
    result, history = run(fully_booked_trip())
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "book_hotel"
    assert isinstance(result.exception, NoRoomsAvailable)
    assert result.error is not None
    assert result.error.type.endswith("NoRoomsAvailable")
    completed = [
        h.step or "" for h in history if h.kind == "action" and h.outcome == "succeeded"
    ]
    undone = [h.step or "" for h in history if h.kind == "compensation"]
    assert sorted(completed) == ["book_flight", "book_tours"]
    # siblings of a parallel group are compensated concurrently
    assert sorted(undone) == sorted(completed)
    assert "confirm_trip" not in result.results


def test_hotel_failure_comes_from_the_context_only() -> None:
    ctx = happy_trip().model_copy(update={"hotel_rooms_available": False})
    first, _ = run(ctx)
    second, _ = run(ctx)
    assert first.status is second.status is SagaStatus.COMPENSATED
