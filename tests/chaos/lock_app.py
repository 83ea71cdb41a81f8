"""Sagas contending for a few hot keys, for the lock contention chaos test.

::

    first   locks hot:<a>          (undo: unfirst)
    second  locks hot:<b>          (undo: unsecond)
    finish  fails for every fifth saga: the saga compensates

``contended`` waits for busy keys; ``impatient`` (every seventh saga) fails
at once on one (``mode="fail"``). Keys ``a`` and ``b`` are drawn from a few
hot ones, in either order, so sagas also deadlock across their two steps;
one of each cycle is failed (``LockDeadlock``) and compensates.

Every step and compensation appends a row ``(saga_id, step, pid, at)`` to
the ``effects`` table (:mod:`tests.e2e.effects_table`, PostgreSQL or MySQL)
when it begins and when it ends (``at`` is the database clock): a saga holds
``hot:<a>`` from before ``first`` begins until after its last row, and
``hot:<b>`` from before ``second`` begins. Workers run it with ``sagakit
worker tests.chaos.lock_app``; ``python -m tests.chaos.lock_app submit URL N
SEED`` commits N sagas for them to claim.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from typing import Any

from pydantic import BaseModel

from sagakit import Lock, Saga, Step
from tests.e2e.effects_table import Recorder

HOT = 3
FAIL_EVERY = 5
IMPATIENT_EVERY = 7


class Contended(BaseModel):
    index: int = 0
    a: int = 0
    b: int = 0
    fail: bool = False
    hold_ms: int = 10


_recorder: Recorder | None = None


async def _record(ctx: Contended, step: str) -> None:
    global _recorder  # noqa: PLW0603 - one pool per worker process
    if _recorder is None:
        recorder = Recorder(os.environ["SAGAKIT_DATABASE_URL"], "saga_id")
        await recorder.open(max_size=4)
        _recorder = recorder
    await _recorder.record(saga_id(ctx.index), step, os.getpid())


def _step(name: str, *, fails: bool = False) -> Any:
    async def run(ctx: Contended) -> str:
        await _record(ctx, name)  # as it begins
        await asyncio.sleep(ctx.hold_ms / 1000)
        if fails and ctx.fail:
            raise RuntimeError(f"saga {ctx.index} cannot finish")
        await _record(ctx, name)  # as it ends
        return name

    return run


def _saga(name: str, mode: Any) -> Saga[Contended]:
    return Saga(
        name,
        [
            Step(
                "first",
                _step("first"),
                compensate=_step("unfirst"),
                locks=[Lock("hot:{ctx.a}", mode=mode)],
            ),
            Step(
                "second",
                _step("second"),
                compensate=_step("unsecond"),
                locks=[Lock("hot:{ctx.b}", mode=mode)],
            ),
            Step("finish", _step("finish", fails=True)),
        ],
        context=Contended,
    )


contended = _saga("contended", "wait")
impatient = _saga("impatient", "fail")


def saga_id(index: int) -> str:
    return f"lc-{index:05d}"


def plan(count: int, seed: int) -> list[tuple[Saga[Contended], Contended]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        ctx = Contended(
            index=i,
            a=rng.randrange(HOT),
            b=rng.randrange(HOT),
            fail=i % FAIL_EVERY == FAIL_EVERY - 1,
            hold_ms=rng.randrange(2, 20),
        )
        out.append((impatient if i % IMPATIENT_EVERY == 0 else contended, ctx))
    return out


async def submit(url: str, count: int, seed: int) -> None:
    from sagakit.adapters.store import open_store_async  # noqa: PLC0415
    from sagakit.runtime import Orchestrator  # noqa: PLC0415

    store = await open_store_async(url, migrate=False)
    orch = Orchestrator(store, [contended, impatient])
    try:
        planned = plan(count, seed)
        for start in range(0, count, 100):
            await asyncio.gather(
                *(
                    orch.submit(saga, ctx, saga_id=saga_id(ctx.index))
                    for saga, ctx in planned[start : start + 100]
                )
            )
    finally:
        await store.close()


if __name__ == "__main__":
    _, mode, url, n, seed = sys.argv
    assert mode == "submit", mode
    asyncio.run(submit(url, int(n), int(seed)))
