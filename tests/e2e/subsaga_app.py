"""A worker process for the sub-saga crash tests: an order saga whose ``pay``
step runs a payment saga as a child, every step recording its effects.

Usage: python subsaga_app.py DB EFFECTS (start BOUNDARY | recover)
   or: SUBSAGA_EFFECTS=EFFECTS sagakit --db DB recover tests.e2e.subsaga_app:order

Each step and compensation appends ``<step>`` to EFFECTS (flushed and
fsynced) when it has happened. In ``start`` mode the process hangs at
BOUNDARY, after writing EFFECTS.ready, for the test to SIGKILL it there:

- ``created``: the parent committed its ``pay`` step; the child is not made
  yet (its context is being built);
- ``told``: the child succeeded and is committed; the parent has not
  recorded it (the step's output is being made);
- ``rollback``: ``ship`` failed, the parent asked the child to roll back,
  and the child's ``charge`` compensation is running.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SQLiteStore, Step, SubSaga

EFFECTS = Path(os.environ.get("SUBSAGA_EFFECTS", "effects.txt"))


class Order(BaseModel):
    amount: int = 25
    hang_at: str = ""
    no_truck: bool = False


class Payment(BaseModel):
    amount: int
    hang_at: str = ""


def effect(what: str) -> None:
    with EFFECTS.open("a") as f:
        f.write(f"{what}\n")
        f.flush()
        os.fsync(f.fileno())


def hang(where: str, at: str) -> None:
    """Block the whole process at ``where`` the first time, if asked to."""
    ready = Path(f"{EFFECTS}.ready")
    if where == at and not ready.exists():
        ready.write_text(where)
        time.sleep(120)  # blocks the event loop too: nothing else moves


def step(name: str) -> Any:
    async def action(ctx: Any) -> str:
        await asyncio.sleep(0.002)
        if name == "ship" and ctx.no_truck:
            effect("ship failed")
            raise RuntimeError("no truck")
        effect(name)
        return name

    return action


def undo(name: str) -> Any:
    async def compensate(ctx: Any) -> None:
        if name == "charge":
            hang("rollback", ctx.hang_at)
        effect(f"undo {name}")

    return compensate


def payment_context(order: Order) -> Payment:
    hang("created", order.hang_at)
    return Payment(amount=order.amount, hang_at=order.hang_at)


def paid(payment: Payment, results: dict[str, Any]) -> dict[str, Any]:
    hang("told", payment.hang_at)
    return {"paid": payment.amount, **results}


payment = Saga(
    "payment",
    [
        Step("authorize", step("authorize"), undo("authorize")),
        Step("charge", step("charge"), undo("charge")),
    ],
    context=Payment,
)

order = Saga(
    "order",
    [
        Step("reserve", step("reserve"), undo("reserve")),
        Step("pay", SubSaga(payment, context=payment_context, output=paid)),
        Step("ship", step("ship")),
    ],
    context=Order,
)


async def main() -> None:
    db, mode = sys.argv[1], sys.argv[3]
    orch = Orchestrator(SQLiteStore(db), [order])
    if mode == "start":
        at = sys.argv[4]
        await orch.run(order, Order(hang_at=at, no_truck=at == "rollback"), saga_id="o")
    else:
        resumed = await orch.recover()
        await orch.wait("o")
        await orch.drain()
        print(f"resumed {len(resumed)}")


if __name__ == "__main__":
    EFFECTS = Path(sys.argv[2])
    asyncio.run(main())
