"""The order service: the CreateOrder saga and the ``orders`` schema.

::

    create_pending_order  -> orders row PENDING        (undo: reject_order)
    verify_consumer       -> consumer.verify           (read-only: no undo)
    create_ticket         -> kitchen.create_ticket     (undo: kitchen.cancel_ticket)
    authorize_card        -> accounting.authorize      (the pivot)
    approve_ticket        -> kitchen.approve_ticket    (retried, never undone)
    approve_order         -> orders row APPROVED       (retried, never undone)

Once the card is authorized the order goes through: the steps after the pivot
are retried until they succeed. A declined card (or an unknown consumer)
undoes the ticket and rejects the order.

Data flows between the steps through their results: ``authorize_card``
charges the amount of the order as ``create_pending_order`` stored it, and
``approve_ticket`` and ``cancel_ticket`` name the ticket that the kitchen's
reply to ``create_ticket`` returned. The payload builders declare a
``results`` parameter to read them.

Run it with ``sagakit worker examples.create_order.order_service --transport
amqp://...``; the local steps use ``$SAGAKIT_DATABASE_URL``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from examples.create_order.database import ServiceDatabase, queue_prefix
from examples.create_order.messages import (
    ApproveTicket,
    AuthorizeCard,
    CancelTicket,
    CardAuthorized,
    ConsumerVerified,
    CreateTicket,
    TicketCreated,
    VerifyConsumer,
)
from sagakit import Results, RetryPolicy, Saga, Step
from sagakit.definition import Remote

REPLY_TIMEOUT = 30.0
"""Seconds a remote step waits for its reply before it fails."""

AFTER_PIVOT = RetryPolicy(attempts=10, backoff=0.2, max_backoff=2.0)
"""Steps after the pivot must end well: they try again and again."""

PENDING, APPROVED, REJECTED = "PENDING", "APPROVED", "REJECTED"

orders_db = ServiceDatabase(
    "order",
    "orders",
    """
    CREATE TABLE IF NOT EXISTS orders.orders (
        order_id     text PRIMARY KEY,
        consumer_id  text NOT NULL,
        amount       integer NOT NULL,
        status       text NOT NULL,
        updated_at   timestamptz NOT NULL DEFAULT now()
    );
    """,
)


class CreateOrder(BaseModel):
    """The saga context: what was ordered, by whom."""

    order_id: str = Field(min_length=1)
    consumer_id: str = Field(min_length=1)
    amount: int = Field(gt=0)


class PendingOrder(BaseModel):
    """The order as ``create_pending_order`` stored it: its step result."""

    order_id: str
    consumer_id: str
    amount: int
    status: str


def _queue(service: str) -> str:
    return f"{queue_prefix()}{service}"


# -- local steps --------------------------------------------------------------


async def create_pending_order(ctx: CreateOrder) -> PendingOrder:
    async with orders_db.transaction() as conn:
        created = await conn.fetchval(
            "INSERT INTO orders.orders (order_id, consumer_id, amount, status) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING "
            "RETURNING order_id",
            ctx.order_id,
            ctx.consumer_id,
            ctx.amount,
            PENDING,
        )
        if created is not None:  # a re-run after a crash changes nothing
            await orders_db.record(conn, ctx.order_id, "create_pending")
        row = await conn.fetchrow(
            "SELECT order_id, consumer_id, amount, status FROM orders.orders "
            "WHERE order_id = $1",
            ctx.order_id,
        )
    if row is None:  # inserted above, never deleted
        raise LookupError(f"order {ctx.order_id} is gone")
    return PendingOrder.model_validate(dict(row))


async def _set_status(ctx: CreateOrder, status: str) -> None:
    async with orders_db.transaction() as conn:
        changed = await conn.fetchval(
            "UPDATE orders.orders SET status = $2, updated_at = now() "
            "WHERE order_id = $1 AND status = $3 RETURNING order_id",
            ctx.order_id,
            status,
            PENDING,
        )
        if changed is not None:
            await orders_db.record(conn, ctx.order_id, status.lower())


async def reject_order(ctx: CreateOrder) -> None:
    await _set_status(ctx, REJECTED)


async def approve_order(ctx: CreateOrder) -> dict[str, str]:
    await _set_status(ctx, APPROVED)
    return {"order_id": ctx.order_id, "status": APPROVED}


# -- command payloads ---------------------------------------------------------


def verify_consumer(ctx: CreateOrder) -> VerifyConsumer:
    return VerifyConsumer(consumer_id=ctx.consumer_id, order_id=ctx.order_id)


def create_ticket(ctx: CreateOrder) -> CreateTicket:
    return CreateTicket(order_id=ctx.order_id, consumer_id=ctx.consumer_id)


def cancel_ticket(ctx: CreateOrder, results: Results) -> CancelTicket:
    created = results.get("create_ticket", TicketCreated)
    return CancelTicket(ticket_id=created.ticket_id)


def authorize_card(ctx: CreateOrder, results: Results) -> AuthorizeCard:
    order = results.get("create_pending_order", PendingOrder)
    return AuthorizeCard(
        order_id=order.order_id, consumer_id=order.consumer_id, amount=order.amount
    )


def approve_ticket(ctx: CreateOrder, results: Results) -> ApproveTicket:
    created = results.get("create_ticket", TicketCreated)
    return ApproveTicket(ticket_id=created.ticket_id)


create_order_saga: Saga[CreateOrder] = Saga(
    "create_order",
    [
        Step(
            "create_pending_order",
            create_pending_order,
            compensate=reject_order,
            output=PendingOrder,
        ),
        Step(
            "verify_consumer",
            Remote(
                "consumer.verify",
                verify_consumer,
                queue=_queue("consumer"),
                reply=ConsumerVerified,
            ),
            timeout=REPLY_TIMEOUT,
        ),
        Step(
            "create_ticket",
            Remote(
                "kitchen.create_ticket",
                create_ticket,
                queue=_queue("kitchen"),
                reply=TicketCreated,
            ),
            compensate=Remote(
                "kitchen.cancel_ticket", cancel_ticket, queue=_queue("kitchen")
            ),
            timeout=REPLY_TIMEOUT,
            compensation_timeout=REPLY_TIMEOUT,
        ),
        Step(
            "authorize_card",
            Remote(
                "accounting.authorize",
                authorize_card,
                queue=_queue("accounting"),
                reply=CardAuthorized,
            ),
            pivot=True,
            timeout=REPLY_TIMEOUT,
        ),
        Step(
            "approve_ticket",
            Remote("kitchen.approve_ticket", approve_ticket, queue=_queue("kitchen")),
            retry=AFTER_PIVOT,
            timeout=REPLY_TIMEOUT,
        ),
        Step("approve_order", approve_order, retry=AFTER_PIVOT),
    ],
    context=CreateOrder,
)
