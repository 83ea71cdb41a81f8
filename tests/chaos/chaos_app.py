"""A lean remote saga for the chaos tests: one orchestrator, two participants.

::

    reserve  -> stock.reserve    (undo: stock.release)
    charge   -> payment.charge   (undo: payment.refund)
    ship     -> stock.ship       (declined for every fifth order: compensate)

Workers run it with ``sagakit worker tests.chaos.chaos_app``; the participants
with ``sagakit participant tests.chaos.chaos_app:stock`` (and ``:payment``).
Queues are named after ``$CHAOS_QUEUE_PREFIX`` so runs on one broker stay
apart; the handlers write to ``$SAGAKIT_DATABASE_URL``, schema ``chaos``
(created by the test, see ``SCHEMA``).

Every effect is one row of ``chaos.effects`` keyed by ``(saga_id, step,
kind)`` with the command's message id, inserted in the handler's own
transaction: a handler that runs again for the same command (the process died
after its transaction committed but before the participant's inbox recorded
the reply) inserts nothing and counts a row in ``chaos.repeats`` instead.
Handlers retry a lost database connection for 60 s, so a database restart is
not a business failure.

``python -m tests.chaos.chaos_app submit DSN N`` commits N sagas (ids
``chaos-00000``...) for the workers to claim; the workers must consume
``REPLY_QUEUE``, since the first command of each leaves at submit.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel

from sagakit import Saga, Step
from sagakit.definition import Remote
from sagakit.messaging import Envelope
from sagakit.participant import CommandRejected, Participant

T = TypeVar("T")

FAIL_EVERY = 5  # index % 5 == 4 is declined at ship and compensated
REPLY_TIMEOUT = 90.0  # longer than any chaos: a timeout means a lost message
PREFIX = os.environ.get("CHAOS_QUEUE_PREFIX", "chaos.")
STOCK_QUEUE = f"{PREFIX}stock"
PAYMENT_QUEUE = f"{PREFIX}payment"
REPLY_QUEUE = f"{PREFIX}replies"  # the workers' --reply-queue

SCHEMA = """
CREATE SCHEMA chaos;
CREATE TABLE chaos.effects (
    saga_id     text NOT NULL,
    step        text NOT NULL,
    kind        text NOT NULL,
    message_id  text NOT NULL,
    pid         integer NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (saga_id, step, kind)
);
CREATE TABLE chaos.repeats (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    saga_id     text NOT NULL,
    step        text NOT NULL,
    kind        text NOT NULL,
    message_id  text NOT NULL,
    pid         integer NOT NULL
);
"""

_LOST_CONNECTION = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.CannotConnectNowError,
)


class Order(BaseModel):
    index: int = 0
    fail: bool = False


class Ack(BaseModel):
    saga_id: str
    step: str


def saga_id(index: int) -> str:
    return f"chaos-{index:05d}"


def meant_to_fail(index: int) -> bool:
    return index % FAIL_EVERY == FAIL_EVERY - 1


# -- the participants' database -------------------------------------------------

_pool: asyncpg.Pool | None = None


async def _retrying(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work`` in a transaction; retry a lost connection for 60 s."""
    global _pool  # noqa: PLW0603 - one pool per participant process
    deadline = time.monotonic() + 60
    while True:
        try:
            if _pool is None:
                _pool = await asyncpg.create_pool(
                    os.environ["SAGAKIT_DATABASE_URL"], min_size=1, max_size=3
                )
            async with _pool.acquire() as conn, conn.transaction():
                return await work(conn)
        except _LOST_CONNECTION:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def _delay() -> float:
    """``$CHAOS_DELAY_MS`` (``low-high``): how long a handler works first."""
    low, _, high = os.environ.get("CHAOS_DELAY_MS", "0").partition("-")
    return random.uniform(float(low), float(high or low)) / 1000


async def record(message: Envelope, kind: str) -> None:
    """Insert the effect of ``message`` once; a repeat only counts itself."""
    await asyncio.sleep(_delay())
    step = message.step or ""
    sid = message.saga_id or ""

    async def insert(conn: Any) -> None:  # a pooled asyncpg connection
        new = await conn.fetchval(
            "INSERT INTO chaos.effects (saga_id, step, kind, message_id, pid) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
            sid,
            step,
            kind,
            message.id,
            os.getpid(),
        )
        if new is None:
            await conn.execute(
                "INSERT INTO chaos.repeats (saga_id, step, kind, message_id, pid) "
                "VALUES ($1, $2, $3, $4, $5)",
                sid,
                step,
                kind,
                message.id,
                os.getpid(),
            )

    await _retrying(insert)


# -- participants ----------------------------------------------------------------

# a small prefetch keeps each process's connections few: the store opens one
# per concurrent command, and six processes share max_connections = 100
stock = Participant("stock", queue=STOCK_QUEUE, prefetch=4)
payment = Participant("payment", queue=PAYMENT_QUEUE, prefetch=4)


def _ack(message: Envelope) -> Ack:
    return Ack(saga_id=message.saga_id or "", step=message.step or "")


@stock.handler("stock.reserve")
async def reserve(cmd: Order, message: Envelope) -> Ack:
    await record(message, "action")
    return _ack(message)


@stock.handler("stock.release")
async def release(cmd: Order, message: Envelope) -> None:
    await record(message, "compensation")


@stock.handler("stock.ship")
async def ship(cmd: Order, message: Envelope) -> Ack:
    if cmd.fail:
        raise CommandRejected(f"order {cmd.index} cannot be shipped")
    await record(message, "action")
    return _ack(message)


@payment.handler("payment.charge")
async def charge(cmd: Order, message: Envelope) -> Ack:
    await record(message, "action")
    return _ack(message)


@payment.handler("payment.refund")
async def refund(cmd: Order, message: Envelope) -> None:
    await record(message, "compensation")


# -- the saga --------------------------------------------------------------------


def _order(ctx: Order) -> Order:
    return ctx


chaos_order: Saga[Order] = Saga(
    "chaos_order",
    [
        Step(
            "reserve",
            Remote("stock.reserve", _order, queue=STOCK_QUEUE, reply=Ack),
            compensate=Remote("stock.release", _order, queue=STOCK_QUEUE),
            timeout=REPLY_TIMEOUT,
            compensation_timeout=REPLY_TIMEOUT,
        ),
        Step(
            "charge",
            Remote("payment.charge", _order, queue=PAYMENT_QUEUE, reply=Ack),
            compensate=Remote("payment.refund", _order, queue=PAYMENT_QUEUE),
            timeout=REPLY_TIMEOUT,
            compensation_timeout=REPLY_TIMEOUT,
        ),
        Step(
            "ship",
            Remote("stock.ship", _order, queue=STOCK_QUEUE, reply=Ack),
            timeout=REPLY_TIMEOUT,
        ),
    ],
    context=Order,
)


async def submit(dsn: str, count: int) -> None:
    from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415
    from sagakit.runtime import Orchestrator  # noqa: PLC0415

    store = await PostgresStore.connect(dsn, migrate=False, max_size=8)
    # the first command is written here, at submit: it must name the workers'
    # reply queue, or its reply goes where no worker listens
    orch = Orchestrator(store, [chaos_order], reply_queue=REPLY_QUEUE)
    try:
        for start in range(0, count, 100):
            await asyncio.gather(
                *(
                    orch.submit(
                        chaos_order,
                        Order(index=i, fail=meant_to_fail(i)),
                        saga_id=saga_id(i),
                    )
                    for i in range(start, min(start + 100, count))
                )
            )
    finally:
        await store.close()


if __name__ == "__main__":
    _, mode, dsn, n = sys.argv
    assert mode == "submit", mode
    asyncio.run(submit(dsn, int(n)))
