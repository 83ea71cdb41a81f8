"""Worker processes for the multi-worker sub-saga test, on any store URL.

Usage: python subsaga_worker_app.py URL EFFECTS submit N
       python subsaga_worker_app.py URL EFFECTS worker

``submit`` commits N ``family-order`` sagas (``order-0``...) for workers;
every fourth one (index % 4 == 3) fails at ``ship``, after its ``pay``
child succeeded, so the child is rolled back. ``worker`` runs a ``Worker``
(claiming at most 4 sagas at a time, so several workers share them) until it
has nothing left to claim or drive.

Each step and compensation appends ``<saga id> <step>`` (``undo <step>``)
to EFFECTS, fsynced, when it has happened; ``charge`` sleeps first, so a
SIGKILL lands while children run.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sagakit import Saga, Step, SubSaga
from sagakit.adapters.store import open_store_async
from sagakit.runtime import SagaClient, Worker

FAIL_EVERY = 4


class Order(BaseModel):
    index: int = 0


class Payment(BaseModel):
    order: str


def effects() -> Path:
    return Path(sys.argv[2])


def record(what: str) -> None:
    with effects().open("a") as f:
        f.write(f"{what}\n")
        f.flush()
        os.fsync(f.fileno())


def step(name: str) -> Any:
    async def action(ctx: Any) -> str:
        who = ctx.order if isinstance(ctx, Payment) else f"order-{ctx.index}"
        if name == "charge":
            await asyncio.sleep(0.05)
        if name == "ship" and ctx.index % FAIL_EVERY == FAIL_EVERY - 1:
            raise RuntimeError("no truck")
        record(f"{who} {name}")
        return name

    return action


def undo(name: str) -> Any:
    async def compensate(ctx: Any) -> None:
        who = ctx.order if isinstance(ctx, Payment) else f"order-{ctx.index}"
        record(f"{who} undo {name}")

    return compensate


payment = Saga(
    "family-payment",
    [
        Step("authorize", step("authorize"), undo("authorize")),
        Step("charge", step("charge"), undo("charge")),
    ],
    context=Payment,
)
order = Saga(
    "family-order",
    [
        Step("reserve", step("reserve"), undo("reserve")),
        Step(
            "pay",
            SubSaga(payment, context=lambda o: Payment(order=f"order-{o.index}")),
        ),
        Step("ship", step("ship")),
    ],
    context=Order,
)


async def main() -> None:
    url, mode = sys.argv[1], sys.argv[3]
    store = await open_store_async(url)
    try:
        if mode == "submit":
            client = SagaClient(store, [order])
            for i in range(int(sys.argv[4])):
                await client.submit(order, Order(index=i), saga_id=f"order-{i}")
        else:
            worker = Worker(store, [order], lease=2.0, poll_interval=0.05, max_active=4)
            await worker.run(until_idle=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
