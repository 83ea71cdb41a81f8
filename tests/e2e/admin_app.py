"""Sagas for the admin CLI tests (``tests/e2e/test_cli_admin.py``).

Every step and compensation appends ``<order> <what>`` to ``$ADMIN_EFFECTS``.
What is marked *broken* fails until ``$ADMIN_FIXED`` is ``1``: the fix an
operator deploys before retrying or resuming. Step ``hold`` of ``held`` writes
``$ADMIN_EFFECTS.started`` and waits until ``$ADMIN_EFFECTS.release`` exists.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel

from sagakit import RetryPolicy, Saga, Step

ONCE = RetryPolicy(attempts=1)


class Order(BaseModel):
    order: str = "o-1"


def effects() -> Path:
    return Path(os.environ.get("ADMIN_EFFECTS", "effects.txt"))


def fixed() -> bool:
    return os.environ.get("ADMIN_FIXED") == "1"


def record(ctx: Order, what: str) -> None:
    with effects().open("a") as f:
        f.write(f"{ctx.order} {what}\n")


def act(name: str, *, broken: bool = False):  # type: ignore[no-untyped-def]
    def action(ctx: Order) -> str:
        record(ctx, name)
        if broken and not fixed():
            raise OSError(f"{name}: service down")
        return f"{name}-{ctx.order}"

    return action


def undo(name: str, *, broken: bool = False):  # type: ignore[no-untyped-def]
    def compensate(ctx: Order) -> None:
        record(ctx, f"undo {name}")
        if broken and not fixed():
            raise OSError(f"undo {name}: service down")

    return compensate


def refuse(ctx: Order) -> None:
    record(ctx, "charge")
    raise ValueError("card declined")


async def hold(ctx: Order) -> str:
    record(ctx, "hold")
    base = str(effects())
    Path(f"{base}.started").write_text(ctx.order)  # noqa: ASYNC240 - a test marker
    async with asyncio.timeout(60):
        while not Path(f"{base}.release").exists():  # noqa: ASYNC240, ASYNC110 - another process writes it
            await asyncio.sleep(0.05)
    return "held"


shipping = Saga(
    "shipping",
    [
        Step("reserve", act("reserve"), compensate=undo("reserve")),
        Step("charge", act("charge"), pivot=True),
        Step("ship", act("ship", broken=True)),  # fails after the pivot: failed
    ],
    context=Order,
)

undoing = Saga(
    "undoing",
    [
        Step(
            "reserve",
            act("reserve"),
            compensate=undo("reserve", broken=True),
            compensation_retry=ONCE,
        ),
        Step("charge", refuse),  # rolls back; the undo fails: compensation_failed
    ],
    context=Order,
)

held = Saga(
    "held",
    [
        Step("book", act("book"), compensate=undo("book")),
        # in flight when cancelled: its outcome is unknown, so undo it anyway
        Step("hold", hold, compensate=undo("hold"), compensate_on_failure=True),
        Step("finish", act("finish")),
    ],
    context=Order,
)
