"""The parking service: parking slots, reserved once a booking's bill is paid.

Run it with ``uvicorn examples.parking.parking_service:app --port 8003``.

On ``bill.paid`` it reserves the booking's slot and publishes
``parking.reserved``, or, if the slot is taken or unknown, publishes
``parking.unavailable``: billing then refunds and booking fails (the
compensation). The slot update and the inbox entry commit together, so a
repeated ``bill.paid`` never reserves twice, nor finds its own reservation
and refunds a valid booking.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, Field

from examples.parking.common import Database, event_bus, found, service_app
from examples.parking.events import (
    BILL_PAID,
    PARKING_RESERVED,
    PARKING_UNAVAILABLE,
    BillPaid,
    ParkingReserved,
    ParkingUnavailable,
)
from sagakit.choreography import EventContext

AVAILABLE, RESERVED = "available", "reserved"

db = Database(
    "parking",
    """
    CREATE TABLE IF NOT EXISTS parking.parking_slot (
        uuid          text PRIMARY KEY,
        name          text NOT NULL,
        status        text NOT NULL,
        reference_no  text
    );
    """,
)
bus = event_bus(
    "parking",
    {PARKING_RESERVED: ParkingReserved, PARKING_UNAVAILABLE: ParkingUnavailable},
)
app = service_app(bus, db, title="parking service")

SLOT = "SELECT uuid, name, status, reference_no FROM parking.parking_slot"


@bus.on(BILL_PAID)
async def reserve_slot(event: BillPaid, ctx: EventContext) -> None:
    async with db.pool.acquire() as conn, conn.transaction():
        slot = await conn.fetchrow(
            f"{SLOT} WHERE uuid = $1 FOR UPDATE", event.parking_slot_uuid
        )
        if slot is not None and slot["status"] == AVAILABLE:
            await conn.execute(
                "UPDATE parking.parking_slot SET status = $2, reference_no = $3 "
                "WHERE uuid = $1",
                event.parking_slot_uuid,
                RESERVED,
                event.reference_no,
            )
            await ctx.publish(
                PARKING_RESERVED,
                ParkingReserved(**event.model_dump(exclude={"amount"})),
            )
        else:
            reason = "no such slot" if slot is None else f"slot is {slot['status']}"
            await ctx.publish(
                PARKING_UNAVAILABLE,
                ParkingUnavailable(
                    **event.model_dump(exclude={"amount"}), reason=reason
                ),
            )
        await ctx.mark_consumed(conn)  # commits with the slot, or not at all


class NewSlot(BaseModel):
    name: str = Field(min_length=1)


@app.post("/parking-slots", status_code=201)
async def create_parking(body: NewSlot) -> dict[str, Any]:
    slot = await db.pool.fetchrow(
        "INSERT INTO parking.parking_slot (uuid, name, status) VALUES ($1, $2, $3) "
        "RETURNING uuid, name, status, reference_no",
        str(uuid.uuid4()),
        body.name,
        AVAILABLE,
    )
    return found(slot, "slot")


@app.get("/parking-slots")
async def parking_slot_list() -> list[dict[str, Any]]:
    return [dict(r) for r in await db.pool.fetch(f"{SLOT} ORDER BY name, uuid")]


@app.get("/parking-slots/{slot_uuid}")
async def parking_slot_details(slot_uuid: str) -> dict[str, Any]:
    slot = await db.pool.fetchrow(f"{SLOT} WHERE uuid = $1", slot_uuid)
    return found(slot, f"parking slot {slot_uuid}")
