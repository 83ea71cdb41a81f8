"""A process of the owned-sagas tests: the README's embedded pattern.

Usage: python owned_app.py DB EFFECTS embedded FIRST COUNT TOTAL STEP_SECONDS
   or: python owned_app.py DB EFFECTS watch SECONDS
   or: OWNED_EFFECTS=EFFECTS sagakit --db DB worker tests.e2e.owned_app:saga

``embedded`` starts sagas FIRST .. FIRST+COUNT-1 in the background, then calls
``recover()`` every 0.1 s (as a web worker would at start-up, and again for
good measure) until TOTAL sagas exist and all have ended. ``watch`` only
calls ``recover()`` for SECONDS and prints how many sagas it took.

Each step appends ``<saga_id> <step> begin|end <pid>`` to EFFECTS (opened with
O_APPEND, one write per line) when it starts and just before it returns, so
the file shows every run of every step and who ran it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from sagakit import Orchestrator, Saga, Step
from sagakit.adapters.store import open_store_async

STEPS = ("one", "two", "three")


class Ctx(BaseModel):
    index: int = 0
    pause: float = 0.2


def effect(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def build(effects: Path) -> Saga[Ctx]:
    def make(step: str):  # type: ignore[no-untyped-def]
        async def action(ctx: Ctx) -> str:
            effect(effects, f"s{ctx.index} {step} begin")
            await asyncio.sleep(ctx.pause)
            effect(effects, f"s{ctx.index} {step} end")
            return step

        return action

    return Saga("owned", [Step(step, make(step)) for step in STEPS], context=Ctx)


saga = build(Path(os.environ.get("OWNED_EFFECTS", "effects.txt")))


async def embedded(orch: Orchestrator, args: list[str]) -> None:
    first, count, total, pause = int(args[0]), int(args[1]), int(args[2]), args[3]
    definition = orch.definition("owned")
    for i in range(first, first + count):
        ctx = Ctx(index=i, pause=float(pause))
        await orch.start(definition, ctx, saga_id=f"s{i}")
    taken = 0
    while True:
        taken += len(await orch.recover())
        counts = await orch.store.count_by_status("owned")
        ended = sum(n for status, n in counts.items() if status.terminal)
        if ended == total and sum(counts.values()) == total and not orch.active:
            break
        await asyncio.sleep(0.1)
    print(f"took {taken}", flush=True)


async def watch(orch: Orchestrator, seconds: float) -> None:
    taken: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        taken += await orch.recover()
        await asyncio.sleep(0.1)
    await orch.drain()
    print(f"took {len(taken)}", flush=True)


async def main() -> None:
    db, effects, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    store = await open_store_async(db)
    orch = Orchestrator(store, [build(effects)])
    try:
        if mode == "embedded":
            await embedded(orch, sys.argv[4:])
        else:
            await watch(orch, float(sys.argv[4]))
    finally:
        await orch.close()


if __name__ == "__main__":
    asyncio.run(main())
