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

The service is a FastAPI app (``sagakit.integrations.fastapi``): ``POST
/orders`` starts a saga, ``GET /orders/{order_id}`` reads it, and a worker
runs in the app's process, claiming orders whoever placed them (this API,
``place_order``). Run it with::

    uvicorn examples.create_order.order_service:app --port 8000

with ``$SAGAKIT_DATABASE_URL`` (``postgresql://...``) and
``$SAGAKIT_TRANSPORT_URL`` (``amqp://...``) set. More workers on the same
database: ``sagakit worker examples.create_order.order_service``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
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
from sagakit import Results, RetryPolicy, Saga, SagaNotFound, Step
from sagakit.cli.main import configure_logging
from sagakit.definition import Remote
from sagakit.integrations.fastapi import SagasDep, result_json, sagakit_lifespan

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


# -- the HTTP API -------------------------------------------------------------


@asynccontextmanager
async def service_logging(app: FastAPI) -> AsyncIterator[None]:
    """The service's own startup: log what sagakit does, one line per event
    (``$CREATE_ORDER_LOG_LEVEL``, INFO by default)."""
    configure_logging(os.environ.get("CREATE_ORDER_LOG_LEVEL", "INFO"))
    yield


app = FastAPI(
    title="order service",
    lifespan=sagakit_lifespan(
        None,  # $SAGAKIT_DATABASE_URL; the broker: $SAGAKIT_TRANSPORT_URL
        [create_order_saga],
        migrate=True,
        run="worker",
        reply_queue=f"{queue_prefix()}replies",
        lifespan=service_logging,
    ),
)


class NewOrder(BaseModel):
    """An order to place; send an ``order_id`` to make a retry safe."""

    consumer_id: str = Field(min_length=1)
    amount: int = Field(gt=0)
    order_id: str | None = Field(default=None, min_length=1)


@app.post("/orders", status_code=202)
async def post_order(body: NewOrder, sagas: SagasDep) -> dict[str, str]:
    """Start a CreateOrder saga; its id is the order id. The same order id
    sent again starts nothing new (it is the idempotency key)."""
    order_id = body.order_id or uuid.uuid4().hex
    context = CreateOrder(
        order_id=order_id, consumer_id=body.consumer_id, amount=body.amount
    )
    saga_id = await sagas.start(
        create_order_saga, context, saga_id=order_id, idempotency_key=order_id
    )
    return {"order_id": saga_id}


@app.get("/orders/{order_id}")
async def order_details(order_id: str, sagas: SagasDep) -> dict[str, Any]:
    """The order's saga (status, step results, error) and its row's status."""
    try:
        saga = result_json(await sagas.result(order_id))
    except SagaNotFound as exc:
        raise HTTPException(status_code=404, detail=f"order {order_id}") from exc
    async with orders_db.transaction() as conn:
        status = await conn.fetchval(
            "SELECT status FROM orders.orders WHERE order_id = $1", order_id
        )
    return {"order_id": order_id, "status": status, "saga": saga}
