"""The booking service: booking requests, pending until the slot is reserved.

Run it with ``uvicorn examples.parking.booking_service:app --port 8001``.

Creating a booking (``POST /bookings``, or ``cli create_booking``) stores it
``pending`` with a new ``reference_no`` and stages ``booking.created`` in the
same transaction (``bus.publish_on``): the bus publishes it once that commits,
so a booking never stays pending for want of its event. The reference is the
correlation id of everything that follows. On
``parking.reserved`` the booking is ``done`` (``booking.confirmed``), on
``parking.unavailable`` it is ``failed`` (``booking.failed``).

This service also watches the tracker: a booking without progress for
``$PARKING_TIMEOUT`` seconds is logged as a stalled choreography.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field

from examples.parking.common import Database, event_bus, found, service_app
from examples.parking.events import (
    BOOKING_CONFIRMED,
    BOOKING_CREATED,
    BOOKING_FAILED,
    PARKING_RESERVED,
    PARKING_UNAVAILABLE,
    BookingCreated,
    BookingEnded,
    ParkingReserved,
    ParkingUnavailable,
)
from sagakit.choreography import EventContext

PENDING, DONE, FAILED = "pending", "done", "failed"

db = Database(
    "booking",
    """
    CREATE TABLE IF NOT EXISTS booking.booking (
        id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        reference_no       text NOT NULL UNIQUE,
        parking_slot_uuid  text NOT NULL,
        status             text NOT NULL
    );
    """,
)
bus = event_bus(
    "booking",
    {
        BOOKING_CREATED: BookingCreated,
        BOOKING_CONFIRMED: BookingEnded,
        BOOKING_FAILED: BookingEnded,
    },
)
app = service_app(bus, db, watch=True, title="booking service")

BOOKING = "SELECT id, reference_no, status, parking_slot_uuid FROM booking.booking"


async def _end(
    ctx: EventContext, reference_no: str, status: str, event_type: str
) -> None:
    async with db.pool.acquire() as conn, conn.transaction():
        booking_id = await conn.fetchval(
            "UPDATE booking.booking SET status = $2 "
            "WHERE reference_no = $1 AND status = $3 RETURNING id",
            reference_no,
            status,
            PENDING,
        )
        if booking_id is not None:
            await ctx.publish(
                event_type,
                BookingEnded(
                    reference_no=reference_no, booking_id=booking_id, status=status
                ),
            )
        await ctx.mark_consumed(conn)


@bus.on(PARKING_RESERVED)
async def confirm(event: ParkingReserved, ctx: EventContext) -> None:
    await _end(ctx, event.reference_no, DONE, BOOKING_CONFIRMED)


@bus.on(PARKING_UNAVAILABLE)
async def fail(event: ParkingUnavailable, ctx: EventContext) -> None:
    await _end(ctx, event.reference_no, FAILED, BOOKING_FAILED)


class NewBooking(BaseModel):
    parking_slot_uuid: str = Field(min_length=1)


@app.post("/bookings", status_code=201)
async def create_booking(body: NewBooking) -> dict[str, Any]:
    """Store the booking and stage booking.created, in one transaction."""
    async with db.pool.acquire() as conn, conn.transaction():
        booking = found(
            await conn.fetchrow(
                "INSERT INTO booking.booking "
                "(reference_no, parking_slot_uuid, status) VALUES ($1, $2, $3) "
                "RETURNING id, reference_no, status, parking_slot_uuid",
                uuid.uuid4().hex,
                body.parking_slot_uuid,
                PENDING,
            ),
            "booking",
        )
        await bus.publish_on(
            conn,
            BOOKING_CREATED,
            BookingCreated(
                reference_no=booking["reference_no"],
                booking_id=booking["id"],
                parking_slot_uuid=booking["parking_slot_uuid"],
            ),
            correlation_id=booking["reference_no"],
            message_id=f"booking-created-{booking['reference_no']}",
        )
    return booking


@app.get("/bookings")
async def booking_list(parking_slot_uuid: str | None = None) -> list[dict[str, Any]]:
    rows = await db.pool.fetch(
        f"{BOOKING} WHERE $1::text IS NULL OR parking_slot_uuid = $1 ORDER BY id",
        parking_slot_uuid,
    )
    return [dict(r) for r in rows]


@app.get("/bookings/{reference_no}")
async def booking_details(reference_no: str) -> dict[str, Any]:
    booking = await db.pool.fetchrow(f"{BOOKING} WHERE reference_no = $1", reference_no)
    return found(booking, f"booking {reference_no}")
