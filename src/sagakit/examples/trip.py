"""The trip-booking saga: flight, hotel and tours booked in parallel.

Each booking returns a reference and has a compensation that cancels it.
Once the three bookings hold, ``confirm_trip`` charges the traveller: it is the
pivot, the point of no return. ``send_itinerary`` comes after it and is retried,
never compensated.

Failure is driven by the context, not by chance: with
``hotel_rooms_available=False`` the hotel raises :class:`NoRoomsAvailable`, and
the flight and tours that were booked are cancelled in reverse completion order.
The short sleeps stand in for calls to remote services, so that timelines show
real durations.
"""

from __future__ import annotations

import asyncio
import logging
import zlib

from pydantic import BaseModel, Field

from sagakit.definition import Parallel, RetryPolicy, Saga, Step

logger = logging.getLogger(__name__)

# Simulated latencies of the remote services, in seconds.
FLIGHT_LATENCY = 0.035
HOTEL_LATENCY = 0.050
TOURS_LATENCY = 0.020
CONFIRM_LATENCY = 0.015
ITINERARY_LATENCY = 0.010
CANCEL_FLIGHT_LATENCY = 0.025
CANCEL_HOTEL_LATENCY = 0.030
CANCEL_TOURS_LATENCY = 0.012


class NoRoomsAvailable(Exception):
    """The hotel has no free room for the requested stay."""


class TripContext(BaseModel):
    """What the traveller asked for."""

    traveller: str
    destination: str
    nights: int = Field(default=3, ge=1)
    hotel_rooms_available: bool = True


def _reference(prefix: str, ctx: TripContext) -> str:
    """A booking reference, stable for the same request."""
    key = f"{ctx.traveller}|{ctx.destination}|{ctx.nights}".encode()
    return f"{prefix}-{zlib.crc32(key):08X}"


def _log(message: str, action: str, ctx: TripContext, reference: str) -> None:
    logger.info(
        message,
        extra={
            "action": action,
            "traveller": ctx.traveller,
            "reference": reference,
        },
    )


async def book_flight(ctx: TripContext) -> str:
    await asyncio.sleep(FLIGHT_LATENCY)
    reference = _reference("FL", ctx)
    _log("flight booked", "flight_booked", ctx, reference)
    return reference


async def cancel_flight(ctx: TripContext, reference: str) -> None:
    await asyncio.sleep(CANCEL_FLIGHT_LATENCY)
    _log("flight cancelled", "flight_cancelled", ctx, reference)


async def book_hotel(ctx: TripContext) -> str:
    await asyncio.sleep(HOTEL_LATENCY)
    if not ctx.hotel_rooms_available:
        raise NoRoomsAvailable(f"no rooms in {ctx.destination} for {ctx.nights} nights")
    reference = _reference("HT", ctx)
    _log("hotel booked", "hotel_booked", ctx, reference)
    return reference


async def cancel_hotel(ctx: TripContext, reference: str) -> None:
    await asyncio.sleep(CANCEL_HOTEL_LATENCY)
    _log("hotel cancelled", "hotel_cancelled", ctx, reference)


async def book_tours(ctx: TripContext) -> str:
    await asyncio.sleep(TOURS_LATENCY)
    reference = _reference("TR", ctx)
    _log("tours booked", "tours_booked", ctx, reference)
    return reference


async def cancel_tours(ctx: TripContext, reference: str) -> None:
    await asyncio.sleep(CANCEL_TOURS_LATENCY)
    _log("tours cancelled", "tours_cancelled", ctx, reference)


async def confirm_trip(ctx: TripContext) -> str:
    """Charge the traveller: the point of no return."""
    await asyncio.sleep(CONFIRM_LATENCY)
    reference = _reference("TRIP", ctx)
    _log("trip confirmed", "trip_confirmed", ctx, reference)
    return reference


async def send_itinerary(ctx: TripContext) -> str:
    await asyncio.sleep(ITINERARY_LATENCY)
    return f"itinerary for {ctx.traveller} sent"


trip_saga: Saga[TripContext] = Saga(
    "trip",
    [
        Parallel(
            Step("book_flight", book_flight, compensate=cancel_flight),
            Step("book_hotel", book_hotel, compensate=cancel_hotel),
            Step("book_tours", book_tours, compensate=cancel_tours),
        ),
        Step("confirm_trip", confirm_trip, pivot=True),
        Step(
            "send_itinerary",
            send_itinerary,
            retry=RetryPolicy(attempts=5, backoff=0.05),
        ),
    ],
    context=TripContext,
)


def happy_trip() -> TripContext:
    """A request that succeeds."""
    return TripContext(traveller="Ada Lovelace", destination="Lisbon", nights=3)


def fully_booked_trip() -> TripContext:
    """A request the hotel cannot serve: the saga compensates."""
    return TripContext(
        traveller="Alan Turing",
        destination="Kyoto",
        nights=4,
        hotel_rooms_available=False,
    )


__all__ = [
    "NoRoomsAvailable",
    "TripContext",
    "fully_booked_trip",
    "happy_trip",
    "trip_saga",
]
