"""The kitchen service: tickets, created, cancelled or approved per order.

Run it with ``sagakit participant examples.create_order.kitchen_service:kitchen
--transport amqp://...``.

Every handler is idempotent by saga id: the ``tickets`` row is keyed by it,
so a command handled twice (the process died after its work committed but
before the participant's inbox recorded the reply) changes nothing the second
time and returns the same ticket.

``$CREATE_ORDER_KITCHEN_DELAY`` slows handlers down for demonstrations and
tests: ``create_ticket=30`` sleeps 30 s before creating each ticket
(``action=seconds``, comma-separated).
"""

from __future__ import annotations

import asyncio
import logging
import os

from examples.create_order.database import ServiceDatabase, queue_prefix
from examples.create_order.messages import (
    ApproveTicket,
    CancelTicket,
    CreateTicket,
    TicketApproved,
    TicketCreated,
)
from sagakit.messaging import Envelope
from sagakit.participant import CommandRejected, Participant

logger = logging.getLogger(__name__)

CREATED, CANCELLED, APPROVED = "CREATED", "CANCELLED", "APPROVED"

kitchen_db = ServiceDatabase(
    "kitchen",
    "kitchen",
    """
    CREATE TABLE IF NOT EXISTS kitchen.tickets (
        ticket_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        saga_id      text NOT NULL UNIQUE,
        order_id     text NOT NULL,
        consumer_id  text NOT NULL,
        status       text NOT NULL
    );
    """,
)

kitchen = Participant("kitchen", queue=f"{queue_prefix()}kitchen")


class TicketNotFound(LookupError):
    """No ticket for this order (yet): a retryable failure."""


def _delays() -> dict[str, float]:
    delays = {}
    for item in os.environ.get("CREATE_ORDER_KITCHEN_DELAY", "").split(","):
        action, _, seconds = item.partition("=")
        if action.strip() and seconds.strip():
            delays[action.strip()] = float(seconds)
    return delays


async def _maybe_wait(action: str, message: Envelope) -> None:
    seconds = _delays().get(action)
    if seconds:
        logger.info(
            "kitchen is slow",
            extra={"action": action, "saga_id": message.saga_id, "delay": seconds},
        )
        await asyncio.sleep(seconds)


@kitchen.handler("kitchen.create_ticket")
async def create_ticket(cmd: CreateTicket, message: Envelope) -> TicketCreated:
    await _maybe_wait("create_ticket", message)
    async with kitchen_db.transaction() as conn:
        ticket_id = await conn.fetchval(
            "INSERT INTO kitchen.tickets (saga_id, order_id, consumer_id, status) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (saga_id) DO NOTHING "
            "RETURNING ticket_id",
            message.saga_id,
            cmd.order_id,
            cmd.consumer_id,
            CREATED,
        )
        if ticket_id is not None:
            await kitchen_db.record(conn, message.saga_id, "create_ticket")
        else:  # created by an earlier delivery of this command
            ticket_id = await conn.fetchval(
                "SELECT ticket_id FROM kitchen.tickets WHERE saga_id = $1",
                message.saga_id,
            )
    return TicketCreated(ticket_id=ticket_id)


@kitchen.handler("kitchen.cancel_ticket")
async def cancel_ticket(cmd: CancelTicket, message: Envelope) -> None:
    await _maybe_wait("cancel_ticket", message)
    async with kitchen_db.transaction() as conn:
        cancelled = await conn.fetchval(
            "UPDATE kitchen.tickets SET status = $2 "
            "WHERE ticket_id = $1 AND status = $3 RETURNING ticket_id",
            cmd.ticket_id,
            CANCELLED,
            CREATED,
        )
        if cancelled is not None:
            await kitchen_db.record(conn, message.saga_id, "cancel_ticket")


@kitchen.handler("kitchen.approve_ticket")
async def approve_ticket(cmd: ApproveTicket, message: Envelope) -> TicketApproved:
    await _maybe_wait("approve_ticket", message)
    async with kitchen_db.transaction() as conn:
        row = await conn.fetchrow(
            "SELECT ticket_id, saga_id, status FROM kitchen.tickets "
            "WHERE ticket_id = $1 FOR UPDATE",
            cmd.ticket_id,
        )
        if row is None:
            raise TicketNotFound(f"no ticket {cmd.ticket_id}")
        if row["saga_id"] != message.saga_id:
            raise CommandRejected(
                f"ticket {cmd.ticket_id} belongs to another order, not "
                f"{message.saga_id}"
            )
        if row["status"] == CREATED:
            await conn.execute(
                "UPDATE kitchen.tickets SET status = $2 WHERE ticket_id = $1",
                row["ticket_id"],
                APPROVED,
            )
            await kitchen_db.record(conn, message.saga_id, "approve_ticket")
        elif row["status"] != APPROVED:
            raise RuntimeError(f"ticket {row['ticket_id']} is {row['status']}")
    return TicketApproved(ticket_id=row["ticket_id"])
