"""The Jepsen-style set workload: each saga adds one integer to a set.

::

    add      -> set.add      (undo: set.remove: the element is marked removed)
    confirm  -> set.confirm  (declined for every odd element: compensated)

Workers run it with ``sagakit worker tests.chaos.set_app``; the participant
with ``sagakit participant tests.chaos.set_app:sets``. Queues are named
after ``$CHAOS_QUEUE_PREFIX``; the handlers write to
``$SAGAKIT_DATABASE_URL`` (through the harness's proxy, so a partition cuts
them off too), schema ``jepsen`` (``SCHEMA``, made by the test).

``jepsen.elements`` holds the set: one row per element, inserted by the
first ``set.add`` (its message id kept) and marked removed by the first
``set.remove``; a handler that runs again for the same command (its reply
was lost) changes nothing and counts a row in ``jepsen.repeats``, and a
removal of an element never added is recorded there as ``phantom``.

``python -m tests.chaos.set_app submit DSN FIRST COUNT`` commits sagas for
elements FIRST..FIRST+COUNT-1 (ids ``set-0000042``) and prints each one
acknowledged (committed) as ``ack ELEMENT``; a submit the store failed (a
restart) is tried again under the same saga id.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from pydantic import BaseModel

from sagakit import Saga, Step
from sagakit.definition import Remote
from sagakit.errors import SagaAlreadyExists, StoreError
from sagakit.messaging import Envelope
from sagakit.participant import CommandRejected, Participant
from tests.chaos.chaos_app import _retrying

PREFIX = os.environ.get("CHAOS_QUEUE_PREFIX", "jepsen.")
SET_QUEUE = f"{PREFIX}sets"
REPLY_QUEUE = f"{PREFIX}replies"
REPLY_TIMEOUT = 120.0  # longer than any nemesis: a timeout is a lost message

SCHEMA = """
CREATE SCHEMA jepsen;
CREATE TABLE jepsen.elements (
    element     integer PRIMARY KEY,
    saga_id     text NOT NULL,
    added_by    text NOT NULL,
    removed_by  text,
    pid         integer NOT NULL
);
CREATE TABLE jepsen.repeats (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    element     integer NOT NULL,
    kind        text NOT NULL,
    message_id  text NOT NULL
);
"""


class Item(BaseModel):
    element: int = 0


class Ack(BaseModel):
    element: int


def saga_id(element: int) -> str:
    return f"set-{element:07d}"


def compensated(element: int) -> bool:
    """Half of the sagas: the odd elements are declined and compensated."""
    return element % 2 == 1


sets = Participant("sets", queue=SET_QUEUE, prefetch=8)


async def _repeat(conn: Any, element: int, kind: str, message: Envelope) -> None:
    await conn.execute(
        "INSERT INTO jepsen.repeats (element, kind, message_id) VALUES ($1, $2, $3)",
        element,
        kind,
        message.id,
    )


@sets.handler("set.add")
async def add(cmd: Item, message: Envelope) -> Ack:
    async def insert(conn: Any) -> None:
        new = await conn.fetchval(
            "INSERT INTO jepsen.elements (element, saga_id, added_by, pid) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
            cmd.element,
            message.saga_id or "",
            message.id,
            os.getpid(),
        )
        if new is None:
            await _repeat(conn, cmd.element, "add", message)

    await _retrying(insert)
    return Ack(element=cmd.element)


@sets.handler("set.remove")
async def remove(cmd: Item, message: Envelope) -> None:
    async def mark(conn: Any) -> None:
        done = await conn.fetchval(
            "UPDATE jepsen.elements SET removed_by = $2 "
            "WHERE element = $1 AND removed_by IS NULL RETURNING 1",
            cmd.element,
            message.id,
        )
        if done is None:
            there = await conn.fetchval(
                "SELECT 1 FROM jepsen.elements WHERE element = $1", cmd.element
            )
            await _repeat(conn, cmd.element, "remove" if there else "phantom", message)

    await _retrying(mark)


@sets.handler("set.confirm")
async def confirm(cmd: Item, message: Envelope) -> Ack:
    if compensated(cmd.element):
        raise CommandRejected(f"element {cmd.element} is declined")
    return Ack(element=cmd.element)


def _item(ctx: Item) -> Item:
    return ctx


jepsen_set: Saga[Item] = Saga(
    "jepsen_set",
    [
        Step(
            "add",
            Remote("set.add", _item, queue=SET_QUEUE, reply=Ack),
            compensate=Remote("set.remove", _item, queue=SET_QUEUE),
            timeout=REPLY_TIMEOUT,
            compensation_timeout=REPLY_TIMEOUT,
        ),
        Step(
            "confirm",
            Remote("set.confirm", _item, queue=SET_QUEUE, reply=Ack),
            timeout=REPLY_TIMEOUT,
        ),
    ],
    context=Item,
)


async def submit(dsn: str, first: int, count: int) -> None:
    from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415
    from sagakit.runtime import Orchestrator  # noqa: PLC0415

    store = await PostgresStore.connect(dsn, migrate=False, max_size=8)
    orch = Orchestrator(store, [jepsen_set], reply_queue=REPLY_QUEUE)

    async def one(element: int) -> None:
        # a client retries a submit the store failed (a restart): under the
        # same saga id, so an earlier try that did commit is not doubled
        deadline = time.monotonic() + 120
        while True:
            try:
                await orch.submit(
                    jepsen_set, Item(element=element), saga_id=saga_id(element)
                )
            except SagaAlreadyExists:
                pass  # the try that failed had committed
            except StoreError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
                continue
            print(f"ack {element}", flush=True)
            return

    try:
        for start in range(first, first + count, 100):
            end = min(start + 100, first + count)
            await asyncio.gather(*(one(e) for e in range(start, end)))
    finally:
        await store.close()


if __name__ == "__main__":
    _, mode, dsn, first, n = sys.argv
    assert mode == "submit", mode
    asyncio.run(submit(dsn, int(first), int(n)))
