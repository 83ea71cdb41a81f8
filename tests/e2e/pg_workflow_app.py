"""A workflow worker process on PostgreSQL or MySQL for the multi-worker test.

Usage: python -m tests.e2e.pg_workflow_app URL submit N
   or: python -m tests.e2e.pg_workflow_app URL worker [--lease 2] [--idle 2]

``URL`` is ``postgresql://...`` or ``mysql://...``.
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

from pydantic import BaseModel

from sagakit.adapters.store import open_store_async, workflow_store_for
from sagakit.ports.workflow_store import WorkflowStore
from sagakit.workflow import WorkflowApp
from tests.e2e.effects_table import Recorder

APP = "pg-workflow"


class Job(BaseModel):
    index: int


def instance_id(index: int) -> str:
    return f"wf-{index:05}"


def build(store: WorkflowStore, effects: Recorder | None, **kw: Any) -> WorkflowApp:
    app = WorkflowApp(APP, store, **kw)

    async def effect(job: Job, step: str) -> None:
        await asyncio.sleep(random.uniform(0.005, 0.02))
        assert effects is not None
        await effects.record(instance_id(job.index), step, os.getpid())

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
    sagas = await open_store_async(dsn, migrate=False)
    store = workflow_store_for(sagas)
    try:
        app = build(store, None)
        for index in range(count):
            await app.start(instance_id(index), "one", Job(index=index))
    finally:
        await sagas.close()


async def worker(dsn: str, lease: float, idle: float) -> None:
    sagas = await open_store_async(dsn, migrate=False)
    store = workflow_store_for(sagas)
    effects = Recorder(dsn, "instance_id")
    await effects.open(max_size=5)
    app = build(store, effects, lease=lease, max_active=50)
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
        await effects.close()
        await sagas.close()
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
