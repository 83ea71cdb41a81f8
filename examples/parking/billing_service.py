"""The billing service: a bill per booking, paid by the customer, refunded
when the parking slot turns out to be unavailable.

Run it with ``uvicorn examples.parking.billing_service:app --port 8002``.

- On ``booking.created`` it creates a pending bill of 100.00 whose
  ``reference_no`` is the booking's, and publishes ``bill.created``.
- Paying (``POST /billing-requests/{ref}/payments``, or ``cli pay_bill``)
  records a payment; once the total is covered the bill is ``paid`` and
  ``bill.paid`` is staged in the same transaction (``bus.publish_on``), to
  go out once it commits.
- On ``parking.unavailable`` it refunds what was paid (a negative payment
  line), marks the bill ``refunded`` and publishes ``bill.refunded``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel, Field

from examples.parking.common import Database, event_bus, found, service_app
from examples.parking.events import (
    BILL_CREATED,
    BILL_PAID,
    BILL_REFUNDED,
    BOOKING_CREATED,
    PARKING_UNAVAILABLE,
    BillCreated,
    BillPaid,
    BillRefunded,
    BookingCreated,
    ParkingUnavailable,
)
from sagakit.choreography import EventContext

PENDING, PAID, REFUNDED = "pending", "paid", "refunded"
TOTAL = Decimal("100.00")

db = Database(
    "billing",
    """
    CREATE TABLE IF NOT EXISTS billing.billing_request (
        id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        reference_no       text NOT NULL UNIQUE,
        booking_id         bigint NOT NULL,
        parking_slot_uuid  text NOT NULL,
        total              numeric(10, 2) NOT NULL,
        status             text NOT NULL
    );
    CREATE TABLE IF NOT EXISTS billing.payment_reconciliation (
        id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        billing_request_id  bigint NOT NULL REFERENCES billing.billing_request (id),
        amount              numeric(10, 2) NOT NULL
    );
    """,
)
bus = event_bus(
    "billing",
    {BILL_CREATED: BillCreated, BILL_PAID: BillPaid, BILL_REFUNDED: BillRefunded},
)
app = service_app(bus, db, title="billing service")

BILL = (
    "SELECT id, reference_no, booking_id, parking_slot_uuid, total, status "
    "FROM billing.billing_request"
)
PAYMENTS = (
    "SELECT id, amount, billing_request_id FROM billing.payment_reconciliation "
    "WHERE billing_request_id = $1 ORDER BY id"
)


@bus.on(BOOKING_CREATED)
async def create_bill(event: BookingCreated, ctx: EventContext) -> None:
    async with db.pool.acquire() as conn, conn.transaction():
        bill_id = await conn.fetchval(
            "INSERT INTO billing.billing_request "
            "(reference_no, booking_id, parking_slot_uuid, total, status) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id",
            event.reference_no,
            event.booking_id,
            event.parking_slot_uuid,
            TOTAL,
            PENDING,
        )
        await ctx.publish(
            BILL_CREATED,
            BillCreated(
                reference_no=event.reference_no, billing_request_id=bill_id, total=TOTAL
            ),
        )
        await ctx.mark_consumed(conn)


@bus.on(PARKING_UNAVAILABLE)
async def refund(event: ParkingUnavailable, ctx: EventContext) -> None:
    async with db.pool.acquire() as conn, conn.transaction():
        bill = await conn.fetchrow(
            f"{BILL} WHERE reference_no = $1 FOR UPDATE", event.reference_no
        )
        if bill is not None and bill["status"] == PAID:
            paid = await conn.fetchval(
                "SELECT coalesce(sum(amount), 0) FROM billing.payment_reconciliation "
                "WHERE billing_request_id = $1",
                bill["id"],
            )
            await conn.execute(
                "INSERT INTO billing.payment_reconciliation "
                "(billing_request_id, amount) VALUES ($1, $2)",
                bill["id"],
                -paid,
            )
            await conn.execute(
                "UPDATE billing.billing_request SET status = $2 WHERE id = $1",
                bill["id"],
                REFUNDED,
            )
            await ctx.publish(
                BILL_REFUNDED,
                BillRefunded(reference_no=event.reference_no, amount=paid),
            )
        await ctx.mark_consumed(conn)


class Payment(BaseModel):
    amount: Decimal = Field(gt=0, max_digits=10, decimal_places=2)


@app.post("/billing-requests/{reference_no}/payments", status_code=201)
async def pay_bill(reference_no: str, body: Payment) -> dict[str, Any]:
    """Record a payment; the one that covers the total stages bill.paid."""
    async with db.pool.acquire() as conn, conn.transaction():
        bill = found(
            await conn.fetchrow(
                f"{BILL} WHERE reference_no = $1 FOR UPDATE", reference_no
            ),
            f"billing request {reference_no}",
        )
        if bill["status"] != PENDING:
            raise HTTPException(
                status_code=409, detail=f"billing request is {bill['status']}"
            )
        payment = await conn.fetchrow(
            "INSERT INTO billing.payment_reconciliation (billing_request_id, amount) "
            "VALUES ($1, $2) RETURNING id, amount, billing_request_id",
            bill["id"],
            body.amount,
        )
        paid = await conn.fetchval(
            "SELECT sum(amount) FROM billing.payment_reconciliation "
            "WHERE billing_request_id = $1",
            bill["id"],
        )
        if paid >= bill["total"]:
            await conn.execute(
                "UPDATE billing.billing_request SET status = $2 WHERE id = $1",
                bill["id"],
                PAID,
            )
            # staged: sent once this commits (never if it rolls back)
            await bus.publish_on(
                conn,
                BILL_PAID,
                BillPaid(
                    reference_no=reference_no,
                    booking_id=bill["booking_id"],
                    parking_slot_uuid=bill["parking_slot_uuid"],
                    amount=paid,
                ),
                correlation_id=reference_no,
                message_id=f"bill-paid-{reference_no}",
            )
    return found(payment, "payment")


@app.get("/billing-requests")
async def billing_request_list() -> list[dict[str, Any]]:
    return [dict(r) for r in await db.pool.fetch(f"{BILL} ORDER BY id")]


@app.get("/billing-requests/{reference_no}")
async def billing_request_details(reference_no: str) -> dict[str, Any]:
    bill = found(
        await db.pool.fetchrow(f"{BILL} WHERE reference_no = $1", reference_no),
        f"billing request {reference_no}",
    )
    payments = await db.pool.fetch(PAYMENTS, bill["id"])
    return {"billing_request": bill, "reconciliations": [dict(p) for p in payments]}
