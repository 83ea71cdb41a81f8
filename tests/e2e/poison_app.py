"""A poison saga for the parking tests: step ``boom`` kills its process.

Usage: python -m tests.e2e.poison_app DB start ID
   or: sagakit --db DB worker tests.e2e.poison_app --until-idle

Each run of ``boom`` appends ``<saga_id> boom <pid>`` to ``$POISON_RUNS``
(fsynced) and then, while the file ``$POISON_RUNS.poison`` exists, ends its
process at once with ``os._exit`` (no cleanup, as an OOM kill or a segfault
would); without it, the step succeeds.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from pydantic import BaseModel

from sagakit import Orchestrator, Saga, Step
from sagakit.adapters.store import open_store_async

RUNS = Path(os.environ.get("POISON_RUNS", "poison-runs.txt"))
CRASH_CODE = 70


class Ctx(BaseModel):
    n: int = 0


async def prepare(ctx: Ctx) -> str:
    return "prepared"


async def boom(ctx: Ctx) -> str:
    with RUNS.open("a") as f:  # noqa: ASYNC230 - a test marker, tiny
        f.write(f"boom {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())
    if Path(f"{RUNS}.poison").exists():  # noqa: ASYNC240
        os._exit(CRASH_CODE)
    return "survived"


saga = Saga("poison", [Step("prepare", prepare), Step("boom", boom)], context=Ctx)


async def start(db: str, saga_id: str) -> None:
    """Run one saga here (driven by this process): ``boom`` ends it."""
    store = await open_store_async(db)
    orch = Orchestrator(store, [saga])
    try:
        await orch.run(saga, Ctx(), saga_id=saga_id)
    finally:
        await store.close()


if __name__ == "__main__":
    _, db, mode, ident = sys.argv
    assert mode == "start", mode
    asyncio.run(start(db, ident))
