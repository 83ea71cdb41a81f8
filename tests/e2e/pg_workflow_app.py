"""A workflow worker process on PostgreSQL for the multi-worker test.

Usage: python pg_workflow_app.py DSN submit N
   or: python pg_workflow_app.py DSN worker [--lease 2] [--idle 2]

``submit`` starts N instances (``wf-00000``...) of one -> two -> three, with
short random delays between the steps. ``worker`` runs the app until no
instance is unfinished for ``--idle`` seconds (or SIGTERM), then prints one
JSON line. Each step records ``(instance_id, step, pid)`` in the ``effects``
table (created by the test) before it returns, after sleeping a few
milliseconds so that a SIGKILL lands mid-step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from typing import Any

import asyncpg
from pydantic import BaseModel

from sagakit.adapters.store.workflow_postgres import PostgresWorkflowStore
from sagakit.workflow import WorkflowApp

APP = "pg-workflow"


class Job(BaseModel):
    index: int


def instance_id(index: int) -> str:
    return f"wf-{index:05}"


def build(
    store: PostgresWorkflowStore, pool: asyncpg.Pool | None, **kw: Any
) -> WorkflowApp:
    app = WorkflowApp(APP, store, **kw)

    async def effect(job: Job, step: str) -> None:
        await asyncio.sleep(random.uniform(0.005, 0.02))
        assert pool is not None
        await pool.execute(
            "INSERT INTO effects (instance_id, step, pid) VALUES ($1, $2, $3)",
            instance_id(job.index),
            step,
            os.getpid(),
        )

    @app.step
    async def one(input: Job) -> Any:
        await effect(input, "one")
        return two(input, delay=random.uniform(0.01, 0.1))

    @app.step
    async def two(input: Job) -> Any:
        await effect(input, "two")
        return three(input, delay=random.uniform(0.01, 0.1))

    @app.step
    async def three(input: Job) -> None:
        await effect(input, "three")

    return app


async def submit(dsn: str, count: int) -> None:
    store = await PostgresWorkflowStore.connect(dsn, migrate=False)
    try:
        app = build(store, None)
        for index in range(count):
            await app.start(instance_id(index), "one", Job(index=index))
    finally:
        await store.close()


async def worker(dsn: str, lease: float, idle: float) -> None:
    store = await PostgresWorkflowStore.connect(dsn, migrate=False)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=5)
    app = build(store, pool, lease=lease, max_active=50)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def watch() -> None:
        quiet_since = time.monotonic()
        while not stop.is_set():
            if await store.unfinished(APP):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > idle:
                stop.set()
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    try:
        await app.run(stop, poll_interval=0.05)
    finally:
        await watcher
        await pool.close()
        await store.close()
    print(json.dumps({"worker": app.worker_id, "pid": os.getpid()}), flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("command", choices=["submit", "worker"])
    parser.add_argument("count", nargs="?", type=int, default=0)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--idle", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.command == "submit":
        asyncio.run(submit(args.dsn, args.count))
    else:
        asyncio.run(worker(args.dsn, args.lease, args.idle))


if __name__ == "__main__":
    main(sys.argv[1:])
