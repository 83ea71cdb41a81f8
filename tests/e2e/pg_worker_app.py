"""A worker process on PostgreSQL or MySQL for the multi-worker tests.

Usage: python -m tests.e2e.pg_worker_app URL worker [--lease 2] [--idle 3]
                                         [--max-active 50] [--sleep-ms 1-5]
   or: python -m tests.e2e.pg_worker_app URL submit N

``URL`` is ``postgresql://...`` or ``mysql://...``. ``submit`` commits N
sagas (ids ``saga-00000``...) for workers to claim; every
fifth one (index % 5 == 4) is meant to fail at step ``three`` and be
compensated. ``worker`` runs a :class:`~sagakit.runtime.Worker` until it has
been idle (nothing driven, nothing claimed, nothing unfinished in the
database) for ``--idle`` seconds, or until SIGTERM; it prints one JSON line
with its id and claim count on a clean exit.

Every step records its effect by inserting ``(saga_id, step, pid)`` into the
``effects`` table (created by the test) in its own transaction on a pool of
its own, before it returns; compensations record ``undo:<step>``. A failed
step records nothing. Steps sleep a few milliseconds first, so a SIGKILL
lands mid-step. Inserts that hit a lost connection (a database restart) are
retried for 30 s, so a restart does not turn into a business failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from sagakit import Saga, Step, StoreError
from sagakit.adapters.store import open_store_async
from sagakit.ports.store import SagaStore
from sagakit.runtime import Orchestrator, Worker
from tests.e2e.effects_table import Recorder

SAGA = "pg-job"
FAIL_EVERY = 5


class Job(BaseModel):
    index: int = 0
    fail: bool = False


class Declined(Exception):
    """The business failure of step ``three`` in a saga meant to fail."""


def saga_id(index: int) -> str:
    return f"saga-{index:05d}"


def meant_to_fail(index: int) -> bool:
    return index % FAIL_EVERY == FAIL_EVERY - 1


class Effects:
    """Records effects in the ``effects`` table, one transaction each."""

    def __init__(self, url: str, sleep: tuple[float, float]) -> None:
        self.recorder = Recorder(url, "saga_id")
        self.sleep = sleep
        self.pid = os.getpid()

    async def record(self, ctx: Job, what: str) -> None:
        await asyncio.sleep(random.uniform(*self.sleep))
        deadline = time.monotonic() + 30
        while True:
            try:
                await self.recorder.record(saga_id(ctx.index), what, self.pid)
            except self.recorder.lost_connection:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
            else:
                return


def build(effects: Effects) -> Saga[Job]:
    def action(step: str) -> Callable[[Job], Awaitable[str]]:
        async def run(ctx: Job) -> str:
            if step == "three" and ctx.fail:
                await asyncio.sleep(random.uniform(*effects.sleep))
                raise Declined(f"{saga_id(ctx.index)} declined at step three")
            await effects.record(ctx, step)
            return f"{step}-{ctx.index}"

        return run

    def undo(step: str) -> Callable[[Job], Awaitable[None]]:
        async def run(ctx: Job) -> None:
            await effects.record(ctx, f"undo:{step}")

        return run

    return Saga(
        SAGA,
        [
            Step("one", action("one"), compensate=undo("one")),
            Step("two", action("two"), compensate=undo("two")),
            Step("three", action("three")),
        ],
        context=Job,
    )


async def submit(dsn: str, count: int) -> None:
    store = await open_store_async(dsn)
    saga = build(Effects(dsn, (0.0, 0.0)))
    orch = Orchestrator(store, [saga])
    try:
        batch = 200
        for start in range(0, count, batch):
            await asyncio.gather(
                *(
                    orch.submit(
                        saga,
                        Job(index=i, fail=meant_to_fail(i)),
                        saga_id=saga_id(i),
                    )
                    for i in range(start, min(start + batch, count))
                )
            )
    finally:
        await store.close()
    print(json.dumps({"submitted": count}))


async def _stop_when_idle(worker: Worker, store: SagaStore, idle: float) -> None:
    quiet_since, seen = time.monotonic(), worker.claimed
    while True:
        await asyncio.sleep(0.2)
        busy = worker.orchestrator.active > 0 or worker.claimed != seen
        seen = worker.claimed
        if not busy:
            try:  # a dead worker's instances wait for its lease to expire
                busy = bool(await store.unfinished([SAGA], limit=1))
            except StoreError:
                busy = True  # the database is away: not idle, just waiting
        if busy:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= idle:
            worker.stop()
            return


async def work(dsn: str, args: argparse.Namespace) -> None:
    low, _, high = args.sleep_ms.partition("-")
    effects = Effects(dsn, (float(low) / 1000, float(high or low) / 1000))
    store = await open_store_async(dsn, migrate=False)
    await effects.recorder.open()
    worker = Worker(
        store, [build(effects)], lease=args.lease, max_active=args.max_active
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.stop)
    watcher = asyncio.create_task(_stop_when_idle(worker, store, args.idle))
    try:
        await worker.run()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await effects.recorder.close()
        await store.close()
    print(
        json.dumps(
            {"worker": worker.worker_id, "pid": os.getpid(), "claimed": worker.claimed}
        ),
        flush=True,
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dsn")
    modes = parser.add_subparsers(dest="mode", required=True)
    run = modes.add_parser("worker")
    run.add_argument("--lease", type=float, default=2.0)
    run.add_argument("--idle", type=float, default=3.0)
    run.add_argument("--max-active", type=int, default=50)
    run.add_argument("--sleep-ms", default="1-5")
    put = modes.add_parser("submit")
    put.add_argument("count", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )
    if args.mode == "submit":
        asyncio.run(submit(args.dsn, args.count))
    else:
        asyncio.run(work(args.dsn, args))


if __name__ == "__main__":
    main(sys.argv[1:])
