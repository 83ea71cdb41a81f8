"""A worker process for the crash tests: runs sagas whose steps record effects.

Usage: python crash_app.py DB EFFECTS (start N | recover)
   or: CRASH_EFFECTS=EFFECTS sagakit --db DB recover tests.e2e.crash_app:saga

Each step appends ``<saga_id> <step>`` to EFFECTS (flushed and fsynced) before it
returns, so the file shows every time a step's effect really happened.
In ``start`` mode, step ``two`` of the first saga writes EFFECTS.ready and hangs,
giving the test a moment to SIGKILL the process mid-step.
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
    hang: bool = False


def effect(path: Path, saga_id: str, step: str) -> None:
    with path.open("a") as f:
        f.write(f"{saga_id} {step}\n")
        f.flush()
        os.fsync(f.fileno())


def build(effects: Path, ready: Path) -> Saga[Ctx]:
    def make(step: str):  # type: ignore[no-untyped-def]
        async def action(ctx: Ctx) -> str:
            await asyncio.sleep(0.002)
            effect(effects, f"saga-{ctx.index}", step)
            if step == "two" and ctx.hang and not os.path.exists(ready):  # noqa: ASYNC240
                ready.write_text("ready")  # noqa: ASYNC240 - a test marker, once
                await asyncio.sleep(120)
            return f"{step}-{ctx.index}"

        return action

    return Saga(
        "crashy",
        [
            Step("one", make("one")),
            Step("two", make("two")),
            Step("three", make("three")),
        ],
        context=Ctx,
    )


saga = build(
    Path(os.environ.get("CRASH_EFFECTS", "effects.txt")),
    Path(os.environ.get("CRASH_EFFECTS", "effects.txt") + ".ready"),
)


async def main() -> None:
    db, effects, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    saga = build(effects, Path(f"{effects}.ready"))
    orch = Orchestrator(SQLiteStore(db), [saga])
    if mode == "start":
        n = int(sys.argv[4])
        await asyncio.gather(
            *(
                orch.run(saga, Ctx(index=i, hang=(i == 0)), saga_id=f"saga-{i}")
                for i in range(n)
            )
        )
    else:
        resumed = await orch.recover()
        await orch.drain()
        print(f"resumed {len(resumed)}")


if __name__ == "__main__":
    asyncio.run(main())
