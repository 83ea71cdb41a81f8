"""Processes for the lock crash test: sagas on one key, one of which hangs.

Usage: python lock_app.py DB EFFECTS (start N | recover)

Saga ``lock-<i>`` takes ``seat:1A`` in step ``hold`` and lets it go when it
ends (after ``finish``). Each step appends ``<saga_id> <step> <pid>`` to
EFFECTS (flushed and fsynced) when it begins. In ``start`` mode the first
saga's ``hold`` writes EFFECTS.ready once the others queue for the seat, and
hangs: the test SIGKILLs the process with the lock held. ``recover`` drives
every unfinished saga to its end.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SQLiteStore, Step


class Ctx(BaseModel):
    index: int = 0
    hang_after: int = 0
    """Hang once this many sagas queue for the seat (0: never)."""


def effect(path: Path, saga_id: str, step: str) -> None:
    with path.open("a") as f:
        f.write(f"{saga_id} {step} {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())


def build(effects: Path, ready: Path, store: SQLiteStore | None) -> Saga[Ctx]:
    async def hold(ctx: Ctx) -> None:
        effect(effects, f"lock-{ctx.index}", "hold")
        if ctx.hang_after and store is not None and not ready.exists():  # noqa: ASYNC240 - a test marker
            # another saga's queue place shows only in the store: poll it
            while len((await store.list_locks()).waiters) < ctx.hang_after:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            ready.write_text("ready")  # noqa: ASYNC240 - a test marker, once
            await asyncio.sleep(120)

    async def finish(ctx: Ctx) -> None:
        effect(effects, f"lock-{ctx.index}", "finish")

    return Saga(
        "locked",
        [Step("hold", hold, locks=["seat:1A"]), Step("finish", finish)],
        context=Ctx,
    )


async def main(db: str, effects: str, mode: str, count: int = 0) -> None:
    store = SQLiteStore(db)
    ready = Path(f"{effects}.ready")
    saga = build(Path(effects), ready, store)
    orch = Orchestrator(store, [saga], lease=2)
    if mode == "start":
        for i in range(count):
            ctx = Ctx(index=i, hang_after=count - 1 if i == 0 else 0)
            await orch.start(saga, ctx, saga_id=f"lock-{i}")
        await asyncio.sleep(120)  # killed before this ends
    else:
        for saga_id in await orch.recover():
            await orch.wait(saga_id)
    await store.close()


if __name__ == "__main__":
    db, effects, mode, *rest = sys.argv[1:]
    asyncio.run(main(db, effects, mode, int(rest[0]) if rest else 0))
