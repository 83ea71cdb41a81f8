"""Workflow worker processes of two releases of one app, for the versions test.

Usage: python versioned_workflow_app.py URL submit N --release 1|2 [--prefix P]
   or: python versioned_workflow_app.py URL worker --release 1|2|both
                                        --effects FILE [--hold-b] [--lease S]
                                        [--until done|waiting:N]

Release 1 runs a -> b -> c (version 1); release 2 runs x -> a -> b2 -> c
(version 2); ``both`` is release 2 keeping version 1 running beside it.
``submit`` starts N instances (``P00000``...) on that release. ``worker``
runs the release until its condition holds (``done``: no instance is
unfinished; ``waiting:N``: N instances are reported waiting and none of its
own version is unfinished), then prints one JSON line; each step appends
``{"id", "step", "version", "pid"}`` to the effects file when it starts.
With ``--hold-b``, step b never returns (the test SIGKILLs the worker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from sagakit.adapters.store import open_database
from sagakit.ports.workflow_store import WorkflowStore
from sagakit.workflow import WorkflowApp

APP = "orders"
CHAINS = {1: ["a", "b", "c"], 2: ["x", "a", "b2", "c"]}


class Effects:
    """Where steps note that they started (one JSON line each, appended)."""

    def __init__(self, path: str | None, *, hold_b: bool = False) -> None:
        self.path = path
        self.hold_b = hold_b

    async def note(self, instance_id: str, step: str, version: int) -> None:
        if self.path is not None:
            line = {"id": instance_id, "step": step, "version": version}
            _append(self.path, {**line, "pid": os.getpid()})
        if step == "b" and self.hold_b:
            await asyncio.Event().wait()  # until the process is killed


def _append(path: str, line: dict[str, Any]) -> None:
    with Path(path).open("a", encoding="utf-8") as sink:
        sink.write(json.dumps(line) + "\n")


def build(
    store: WorkflowStore, release: str, effects: Effects | None = None, **kw: Any
) -> WorkflowApp:
    """The app of ``release`` (1, 2 or both) on ``store``."""
    if release == "both":
        return build(
            store, "2", effects, previous=[build(store, "1", effects, **kw)], **kw
        )
    version = int(release)
    app = WorkflowApp(APP, store, version=version, **kw)
    steps = CHAINS[version]
    for here, after in zip(steps, [*steps[1:], None], strict=True):
        app.step(_step(app, effects or Effects(None), here, after))
    return app


def _step(app: WorkflowApp, effects: Effects, name: str, after: str | None) -> Any:
    async def step(instance_id: str) -> Any:
        await effects.note(instance_id, name, app.version)
        return None if after is None else app.steps[after](instance_id)

    step.__name__ = name
    return step


async def submit(url: str, count: int, release: str, prefix: str) -> None:
    async with await open_database(url) as db:
        assert db.workflows is not None
        app = build(db.workflows, release)
        for index in range(count):
            instance_id = f"{prefix}{index:05}"
            await app.start(instance_id, CHAINS[app.version][0], instance_id)


async def done(store: WorkflowStore, app: WorkflowApp, until: str) -> bool:
    if until == "done":
        return await store.unfinished(APP) == 0
    wanted = int(until.removeprefix("waiting:"))
    pending = await store.list_workflows(app=APP, limit=10_000)
    waiting = [r for r in pending if r.waiting]
    own = [
        r
        for r in pending
        if r.definition_version == app.version and not r.status.terminal
    ]
    return len(waiting) >= wanted and not own


async def worker(
    url: str, release: str, effects: Effects, lease: float, until: str
) -> None:
    async with await open_database(url) as db:
        store = db.workflows
        assert store is not None
        app = build(store, release, effects, lease=lease, max_active=20)
        stop = asyncio.Event()

        async def watch() -> None:
            while True:
                if await done(store, app, until):
                    stop.set()
                    return
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        runner = asyncio.create_task(app.run(stop, poll_interval=0.05))
        await asyncio.gather(watcher, runner)
        statuses = {
            s.value: n for s, n in (await store.count_workflows_by_status(APP)).items()
        }
    print(json.dumps({"pid": os.getpid(), "statuses": statuses}), flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("command", choices=["submit", "worker"])
    parser.add_argument("count", nargs="?", type=int, default=0)
    parser.add_argument("--release", choices=["1", "2", "both"], default="1")
    parser.add_argument("--prefix", default="wf-")
    parser.add_argument("--effects")
    parser.add_argument("--hold-b", action="store_true")
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--until", default="done")
    args = parser.parse_args(argv)
    if args.command == "submit":
        asyncio.run(submit(args.url, args.count, args.release, args.prefix))
    else:
        effects = Effects(args.effects, hold_b=args.hold_b)
        asyncio.run(worker(args.url, args.release, effects, args.lease, args.until))


if __name__ == "__main__":
    main(sys.argv[1:])
