"""The sleeping instances of ``scale_timers.py``, the fast path that writes
them, and the floors its timers are measured against.

The fast path writes the rows the stores write (``sagakit.adapters.store.
workflow_rows``): on SQLite with the store's own named queries ``workflow_insert``
and ``workflow_insert_history``, many per transaction; on PostgreSQL with
``COPY`` into the same columns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sagakit.adapters.store import workflow_rows
from sagakit.ports.workflow_store import WorkflowRecord, WorkflowStatus, WorkflowStore
from sagakit.workflow import WorkflowApp

APP = "timers"
ASLEEP_FOR = 86_400.0  # the sleeping instances' timers are a day away
CHUNK = 10_000  # rows per transaction when building
COLUMNS = (
    "app", "instance_id", "status", "step", "input", "due_at", "state", "version",
    "attempts", "transitions", "error", "created_at", "updated_at", "owner",
    "lease_until", "result", "start_digest", "definition_version", "fingerprint",
)  # fmt: skip
HISTORY = (
    "app", "instance_id", "step", "attempt", "outcome", "detail", "error",
    "recorded_at",
)  # fmt: skip


class Fired:
    """When each timer of one round was due and when it fired."""

    def __init__(self) -> None:
        self.times: list[tuple[float, float]] = []
        self.wanted = 0
        self.all = asyncio.Event()

    def expect(self, count: int) -> None:
        self.times, self.wanted = [], count
        self.all.clear()

    def add(self, due: float) -> None:
        self.times.append((due, time.time()))
        if len(self.times) >= self.wanted:
            self.all.set()


@contextlib.asynccontextmanager
async def open_store(args: argparse.Namespace) -> AsyncIterator[WorkflowStore]:
    """A fresh, migrated workflow store: a temp SQLite file, or a database
    ``--db-name`` created (and dropped at the end) on ``--dsn``'s server."""
    if args.store == "sqlite":
        from sagakit.adapters.store.workflow_sqlite import (  # noqa: PLC0415 - per store
            SQLiteWorkflowStore,
        )

        with tempfile.TemporaryDirectory(prefix="sagakit-timers-") as tmp:
            store = SQLiteWorkflowStore(Path(tmp) / "timers.db")
            try:
                yield store
            finally:
                await store.close()
        return
    from sagakit.adapters.store.workflow_postgres import (  # noqa: PLC0415 - per store
        PostgresWorkflowStore,
    )

    await recreate(args, create=True)
    url = urlunsplit(urlsplit(args.dsn)._replace(path=f"/{args.db_name}"))
    try:
        pg = await PostgresWorkflowStore.connect(url, max_size=10)
        try:
            yield pg
        finally:
            await pg.close()
    finally:
        await recreate(args, create=False)


async def recreate(args: argparse.Namespace, *, create: bool) -> None:
    import asyncpg  # noqa: PLC0415 - the postgres extra

    conn = await asyncpg.connect(args.dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{args.db_name}"')
    finally:
        await conn.close()


def instance(app: WorkflowApp, instance_id: str, due: float) -> WorkflowRecord:
    """An instance asleep until ``due`` in ``wake``, as a step left it."""
    now = time.time()
    return WorkflowRecord(
        app=APP,
        instance_id=instance_id,
        status=WorkflowStatus.PENDING,
        step="wake",
        input={"due": due},
        due_at=due,
        state={},
        version=2,
        attempts=0,
        transitions=1,
        error=None,
        created_at=now,
        updated_at=now,
        start_digest="bench",
        definition_version=app.version,
        fingerprint=app.fingerprint,
    )


async def insert(store: WorkflowStore, records: Sequence[WorkflowRecord]) -> None:
    """The fast path (see the module docstring), a transaction a chunk."""
    db: Any = store.database  # type: ignore[attr-defined]  # SQL stores have one
    for at in range(0, len(records), CHUNK):
        chunk = records[at : at + CHUNK]
        found = [_row(r) for r in chunk]
        lines = [_line(r) for r in chunk]
        if hasattr(db, "executemany"):  # SQLite
            with db.transaction("bulk insert"):
                db.executemany("workflow_insert", found)
                db.executemany("workflow_insert_history", lines)
        else:  # PostgreSQL
            async with db.transaction("bulk insert") as conn:
                await conn.copy_records_to_table(
                    "sagakit_workflow", columns=COLUMNS, records=found
                )
                await conn.copy_records_to_table(
                    "sagakit_workflow_history", columns=HISTORY, records=lines
                )


def _row(r: WorkflowRecord) -> tuple[Any, ...]:
    """``r`` as :data:`COLUMNS`, bound as the stores bind them."""
    return (
        r.app,
        r.instance_id,
        *workflow_rows.workflow_columns(r),
        r.created_at,
        r.updated_at,
        r.owner,
        r.lease_until,
        None,
        r.start_digest,
        *workflow_rows.workflow_definition(r),
    )


def _line(r: WorkflowRecord) -> tuple[Any, ...]:
    """Its history line (the step that put it to sleep), as :data:`HISTORY`."""
    detail = json.dumps({"next": "wake", "delay": ASLEEP_FOR})
    return (r.app, r.instance_id, "wake", 0, "succeeded", detail, None, r.created_at)


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def hand_written(store: WorkflowStore, fired: Fired, dues: list[float]) -> Any:
    """The floor: due times kept in memory; at each, one ``UPDATE`` and a
    commit on the store's own database (no framework; on PostgreSQL each in
    a task of its own, on its pool)."""
    db: Any = store.database  # type: ignore[attr-defined]  # SQL stores have one

    async def update(key: tuple[str, str], due: float) -> None:
        async with db.pool.acquire() as conn:
            await conn.execute(FLOOR_POSTGRES, *key)
        fired.add(due)

    async def run() -> None:
        tasks = set()
        for i, due in enumerate(dues):
            await asyncio.sleep(due - time.time())
            key = (APP, f"floor-{i}")
            if hasattr(db, "conn"):  # SQLite
                db.conn.execute("BEGIN IMMEDIATE")
                db.conn.execute(FLOOR_SQLITE, key)
                db.conn.execute("COMMIT")
                fired.add(due)
            else:
                task = asyncio.create_task(update(key, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[None]:
        task = asyncio.create_task(run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return running


FLOOR_SQLITE = (
    "UPDATE sagakit_workflow SET status = 'succeeded' WHERE app = ? AND instance_id = ?"
)
FLOOR_POSTGRES = (
    "UPDATE sagakit_workflow SET status = 'succeeded' "
    "WHERE app = $1 AND instance_id = $2"
)


async def loop_floor(rate: float, count: int) -> float:
    """p99 lateness of ``count`` bare ``loop.call_at`` timers at ``rate``/s."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    done = loop.create_future()
    start = loop.time() + 0.2

    def ring(due: float) -> None:
        late.append(loop.time() - due)
        if len(late) == count and not done.done():
            done.set_result(None)

    for i in range(count):
        loop.call_at(start + i / rate, ring, start + i / rate)
    await done
    return percentile(late, 99)
