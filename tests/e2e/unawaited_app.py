"""Services for the end-to-end test of commands sent without a reply wait.

``sagakit worker tests.e2e.unawaited_app`` runs the two sagas;
``sagakit participant tests.e2e.unawaited_app:kitchen`` (and ``:accounting``)
the services. Queue names start with ``$UNAWAITED_QUEUE_PREFIX`` so that
parallel runs do not meet. Handlers record what they did in the ``effects``
table of ``$SAGAKIT_DATABASE_URL`` (created by the test):

* ``undo_order``: the kitchen creates a ticket, accounting declines the
  charge, and the ticket's undo (``kitchen.reject_ticket``, fire and forget)
  reaches a kitchen that never finishes it;
* ``slow_order``: the kitchen takes ``slow_seconds`` to create a ticket,
  longer than the step's 0.5 s timeout, so the saga sends
  ``kitchen.cancel_ticket`` (the action's ``on_timeout``), which the
  kitchen handles while still working on the ticket.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg
from pydantic import BaseModel

from sagakit import Saga, Step
from sagakit.definition import Remote
from sagakit.messaging import Envelope
from sagakit.participant import CommandRejected, Participant

PREFIX_VAR = "UNAWAITED_QUEUE_PREFIX"


class Order(BaseModel):
    order_id: int
    slow_seconds: float = 0.0


def ticket(ctx: Order) -> dict[str, float]:
    return {"order_id": ctx.order_id, "slow_seconds": ctx.slow_seconds}


def order_ref(ctx: Order) -> dict[str, int]:
    return {"order_id": ctx.order_id}


def sagas(prefix: str) -> tuple[Saga[Order], Saga[Order]]:
    """The two sagas, their commands sent to the queues under ``prefix``."""
    kitchen_queue, accounting_queue = f"{prefix}kitchen", f"{prefix}accounting"
    undo = Saga(
        "undo_order",
        [
            Step(
                "create_ticket",
                Remote("kitchen.create_ticket", ticket, queue=kitchen_queue),
                compensate=Remote(
                    "kitchen.reject_ticket",
                    order_ref,
                    queue=kitchen_queue,
                    awaited=False,
                ),
                timeout=20,
            ),
            Step(
                "charge",
                Remote("accounting.charge", order_ref, queue=accounting_queue),
                timeout=20,
            ),
        ],
        context=Order,
    )
    slow = Saga(
        "slow_order",
        [
            Step(
                "create_ticket",
                Remote(
                    "kitchen.create_ticket",
                    ticket,
                    queue=kitchen_queue,
                    on_timeout=Remote(
                        "kitchen.cancel_ticket", order_ref, queue=kitchen_queue
                    ),
                ),
                timeout=0.5,
            ),
        ],
        context=Order,
    )
    return undo, slow


_PREFIX = os.environ.get(PREFIX_VAR, "")
undo_order, slow_order = sagas(_PREFIX)
kitchen = Participant("kitchen", queue=f"{_PREFIX}kitchen")
accounting = Participant("accounting", queue=f"{_PREFIX}accounting")


_LOST = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # a shutdown, a restart
)


async def _insert(message: Envelope, action: str) -> None:
    conn = await asyncpg.connect(os.environ["SAGAKIT_DATABASE_URL"], timeout=5)
    try:
        await conn.execute(
            "INSERT INTO effects (saga_id, action, attempt) VALUES ($1, $2, $3)",
            message.saga_id,
            action,
            message.attempt,
        )
    finally:
        conn.terminate()


async def record(message: Envelope, action: str) -> None:
    """Insert the effect; a lost connection (a database restart by another
    test) is retried for 30 s so that it does not turn into a failure."""
    for _ in range(300):
        try:
            await _insert(message, action)
        except _LOST:
            await asyncio.sleep(0.1)
        else:
            return
    raise RuntimeError(f"could not record {action} of {message.saga_id}")


@kitchen.handler("kitchen.create_ticket")
async def create_ticket(cmd: dict[str, float], message: Envelope) -> dict[str, int]:
    await asyncio.sleep(cmd.get("slow_seconds", 0.0))
    await record(message, "create_ticket")
    return {"ticket_id": int(cmd["order_id"]) + 100}


@kitchen.handler("kitchen.reject_ticket")
async def reject_ticket(cmd: dict[str, int], message: Envelope) -> None:
    await record(message, "reject_ticket")
    await asyncio.sleep(3600)  # never finishes: nothing may wait for it


@kitchen.handler("kitchen.cancel_ticket")
async def cancel_ticket(cmd: dict[str, int], message: Envelope) -> None:
    await record(message, "cancel_ticket")


@accounting.handler("accounting.charge")
async def charge(cmd: dict[str, int], message: Envelope) -> None:
    raise CommandRejected("card declined")
