"""Workflow apps (``sagakit.workflow.WorkflowApp``) on SQLite or PostgreSQL,
against a hand-written floor measured in the same run.

An instance runs three async steps, ``one -> two -> three``: each returns the
call of the next, the last a value. Each row has a database of its own:
``--store sqlite`` (the default), a fresh temp file (WAL,
``synchronous=NORMAL``: ``SQLiteWorkflowStore``'s defaults); ``--store
postgres``, a fresh database on the server of ``--dsn``, created for the row
and dropped after it (``PostgresWorkflowStore.connect``, its default pool).
Rows:

wf-seq      one at a time: ``app.start(None, one, i)``, ``app.run_until_idle()``
wf-conc     ``--n`` instances started (not timed), then one timed
            ``run_until_idle()``, ``batch`` = ``max_active`` = ``--concurrency``;
            the steps do not await
wf-spread   wf-conc with steps that first await ``asyncio.sleep(0)`` 0-4 times
            (drawn by a seeded ``random.Random`` per input and step, the same on
            both sides of a comparison): steps a few loop turns apart
floor-seq   the driver alone (``sqlite3``, same file settings; asyncpg on one
            connection): tables instance (id, step, state JSON, version,
            status) and history; a create transaction, then per step one
            transaction, ``UPDATE instance ... WHERE version = ?; INSERT
            history``, committed before the next step runs (4 commits;
            ``BEGIN IMMEDIATE`` on SQLite), awaiting the same step functions
floor-conc  the floor, ``--concurrency`` instances gathered at a time (a commit
            per step; on PostgreSQL an asyncpg pool of ``--concurrency``, a
            connection per instance in flight); created first, not timed, as
            in wf-conc

Figures: instances/s (median of ``--repeats`` timed runs after a warm-up of
``n // 10``), CPU us per instance (``time.process_time``: this process's, not
the PostgreSQL server's), commits per instance and per step (the store's
``database.commits``: a transaction on SQLite, a write statement, each its
own transaction, on PostgreSQL), step results per commit (``app.saves``), and
each sagakit row's rate over its floor's (wf-seq over floor-seq, wf-conc and
wf-spread over floor-conc). Printed, and written with ``--json`` as
``against_commit.py`` reads them; never asserted (exit 0).

    python benchmarks/workflow_throughput.py [--store sqlite|postgres]
        [--n 2000] [--repeats 5] [--concurrency 100] [--json out.json]
        [--dir DIR] [--dsn URL] [--db-prefix PREFIX]
    python benchmarks/against_commit.py HEAD~1 benchmarks/workflow_throughput.py \
        --rounds 3 -- --store postgres --n 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.workflow import WorkflowApp

# benchmarks/sqlite_throughput.py and workflow_floors.py, also when this
# script is run from elsewhere
sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import parse_checked
from sqlite_throughput import filesystem, load_average
from workflow_floors import STEPS, AsyncpgFloor, Floor, SQLiteFloor, chain

SEED = 20261207
MAX_TURNS = 4  # wf-spread: sleep(0)s a step awaits at most
Counters = Callable[[], tuple[int, int, int]]  # commits, results saved, batches


@dataclass
class Sample:
    """One timed part of a run: wall and CPU seconds, counter deltas."""

    seconds: float = 0.0
    cpu: float = 0.0
    counts: tuple[int, ...] = (0, 0, 0)


@contextlib.contextmanager
def timing(counters: Counters) -> Iterator[Sample]:
    sample, before = Sample(), counters()
    cpu, start = time.process_time(), time.perf_counter()
    yield sample
    sample.seconds = time.perf_counter() - start
    sample.cpu = time.process_time() - cpu
    sample.counts = tuple(a - b for a, b in zip(counters(), before, strict=True))


@dataclass
class Row:
    key: str
    library: str  # "sagakit" or "floor"
    what: str
    n: int
    concurrency: int
    floor: str | None = None  # the floor row of the same shape
    runs: list[float] = field(default_factory=list)  # instances/s of each run
    cpu_us_per_saga: float = 0.0  # per instance
    commits_per_instance: float = 0.0
    commits_per_step: float = 0.0
    results_per_commit: float = 0.0
    ratio_vs_floor: float | None = None

    @property
    def sagas_per_s(self) -> float:  # instances/s; against_commit.py's name
        return statistics.median(self.runs)

    def cells(self) -> tuple[str, ...]:
        """Its line of the table (:data:`HEADER`)."""
        ratio = self.ratio_vs_floor
        return (
            self.key, self.what, str(self.n), str(self.concurrency),
            f"{self.sagas_per_s:,.0f}", f"{self.cpu_us_per_saga:,.1f}",
            f"{self.commits_per_instance:.2f}", f"{self.commits_per_step:.2f}",
            f"{self.results_per_commit:.2f}", "-" if ratio is None else f"{ratio:.2f}x",
        )  # fmt: skip


async def measure(
    row: Row, run: Callable[[int], Awaitable[Sample]], repeats: int
) -> None:
    """A warm-up of ``n // 10`` instances, then ``repeats`` timed runs."""
    await run(max(1, row.n // 10))
    samples = []
    for _ in range(repeats):
        gc.collect()
        samples.append(await run(row.n))
    done = row.n * repeats
    commits, results, batches = (sum(s.counts[j] for s in samples) for j in range(3))
    row.runs = [row.n / s.seconds for s in samples]
    row.cpu_us_per_saga = sum(s.cpu for s in samples) / done * 1e6
    row.commits_per_instance = commits / done
    row.commits_per_step = commits / done / len(STEPS)
    row.results_per_commit = results / batches if batches else 0.0


async def sagakit_row(
    row: Row, store: Any, turns: list[list[int]] | None, repeats: int
) -> None:
    size = row.concurrency  # 1 for wf-seq: the same claims as the default 100
    app = WorkflowApp("bench", store, batch=size, max_active=size)
    steps = [app.step(fn) for fn in chain(lambda name, i: app.steps[name](i), turns)]

    def counters() -> tuple[int, int, int]:
        return store.database.commits, app.saves.saves, app.saves.batches

    async def run(count: int) -> Sample:
        ran = 0
        if size == 1:
            with timing(counters) as sample:
                for i in range(count):
                    await app.start(None, steps[0], i)
                    ran += await app.run_until_idle()
        else:
            for i in range(count):
                await app.start(None, steps[0], i)
            with timing(counters) as sample:
                ran = await app.run_until_idle()
        if ran != len(STEPS) * count:
            raise RuntimeError(f"{row.key}: {ran} steps ran of {len(STEPS) * count}")
        return sample

    try:
        await measure(row, run, repeats)
    finally:
        await store.close()


async def floor_row(row: Row, floor: Floor, repeats: int) -> None:
    conc = row.concurrency

    def counters() -> tuple[int, int, int]:  # a commit per step result
        return floor.commits, floor.commits, floor.commits

    async def instance(iid: str, i: int) -> None:
        async with floor.connection() as conn:
            await floor.run(conn, iid, i)

    async def run(count: int) -> Sample:
        async with floor.connection() as conn:
            if conc == 1:
                with timing(counters) as sample:
                    for i in range(count):
                        await floor.run(conn, await floor.create(conn, i), i)
                return sample
            ids = [await floor.create(conn, i) for i in range(count)]
        with timing(counters) as sample:
            for at in range(0, count, conc):
                batch = range(at, min(at + conc, count))
                await asyncio.gather(*(instance(ids[i], i) for i in batch))
        return sample

    try:
        await measure(row, run, repeats)
    finally:
        await floor.close()


class SQLite:
    """Where the rows run with ``--store sqlite``: a file each in ``db_dir``."""

    hand = "sqlite3"

    def __init__(self, db_dir: Path) -> None:
        self.db_dir = db_dir

    async def about(self) -> tuple[str, str]:
        """What the title line and the next say of the store."""
        where = f"db dir {self.db_dir} ({filesystem(self.db_dir)})"
        return (
            "SQLite (WAL, synchronous NORMAL)",
            f"sqlite {sqlite3.sqlite_version}, {where}",
        )

    @contextlib.asynccontextmanager
    async def database(self, key: str) -> AsyncIterator[str]:
        yield str(self.db_dir / f"{key}.db")

    async def store(self, where: str) -> Any:
        return SQLiteWorkflowStore(where)

    async def floor(self, where: str, size: int) -> Floor:
        return SQLiteFloor(where)


class Postgres:
    """Where the rows run with ``--store postgres``: a fresh database each
    on the server of ``dsn`` (postgres_throughput.py's helpers), dropped
    after the row."""

    hand = "asyncpg"

    def __init__(self, dsn: str | None, prefix: str) -> None:
        import postgres_throughput as pg  # noqa: PLC0415 - asyncpg: these runs only

        self.pg, self.prefix = pg, prefix
        self.dsn = dsn or os.environ.get(pg.DSN_ENV) or pg.DEFAULT_DSN

    async def about(self) -> tuple[str, str]:
        server = await self.pg.server_info(self.dsn)
        title = (
            f"PostgreSQL {server['server_version']} at {self.pg.describe(self.dsn)} "
            f"(synchronous_commit={server['synchronous_commit']}, "
            f"fsync={server['fsync']})"
        )
        asyncpg = importlib.metadata.version("asyncpg")
        return title, f"asyncpg {asyncpg}, databases {self.prefix}_<row>"

    @contextlib.asynccontextmanager
    async def database(self, key: str) -> AsyncIterator[str]:
        name = f"{self.prefix}_{key.replace('-', '_')}"
        await self.pg.recreate_database(self.dsn, name)
        try:
            yield self.pg.database_url(self.dsn, name)
        finally:
            await self.pg.recreate_database(self.dsn, name, create=False)

    async def store(self, where: str) -> Any:
        from sagakit.adapters.store.workflow_postgres import (  # noqa: PLC0415
            PostgresWorkflowStore,
        )

        return await PostgresWorkflowStore.connect(where)

    async def floor(self, where: str, size: int) -> Floor:
        return await AsyncpgFloor.open(where, size)


def rows(n: int, c: int, hand: str) -> list[Row]:
    hand, app = f"hand-written {hand},", "WorkflowApp,"
    return [
        Row("floor-seq", "floor", f"{hand} one at a time", n, 1),
        Row("wf-seq", "sagakit", f"{app} one at a time", n, 1, "floor-seq"),
        Row("floor-conc", "floor", f"{hand} {c} in flight", n, c),
        Row("wf-conc", "sagakit", f"{app} batch {c}", n, c, "floor-conc"),
        Row("wf-spread", "sagakit", f"{app} batch {c}, 0-4 turns", n, c, "floor-conc"),
    ]


def spread(n: int) -> list[list[int]]:
    """wf-spread's ``sleep(0)`` counts by instance input and step (seeded)."""
    draw = random.Random(SEED).randint
    return [[draw(0, MAX_TURNS) for _ in STEPS] for _ in range(n)]


async def run_row(row: Row, place: SQLite | Postgres, repeats: int) -> Row:
    async with place.database(row.key) as where:
        if row.library == "floor":
            await floor_row(row, await place.floor(where, row.concurrency), repeats)
        else:
            turns = spread(row.n) if row.key == "wf-spread" else None
            await sagakit_row(row, await place.store(where), turns, repeats)
    return row


HEADER = (
    "row", "what", "n", "in flight", "instances/s", "cpu us/inst",
    "commits/inst", "commits/step", "results/commit", "vs floor",
)  # fmt: skip


def table(results: list[Row]) -> list[str]:
    """A line a row: text left-aligned, figures right-aligned."""
    cells = [HEADER, *(r.cells() for r in results)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    lines = []
    for line in cells:
        text = [c.ljust(w) for c, w in zip(line[:2], widths, strict=False)]
        figures = [c.rjust(w) for c, w in zip(line[2:], widths[2:], strict=True)]
        lines.append("  ".join(text + figures).rstrip())
    return [lines[0], "-" * len(lines[0]), *lines[1:]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--n", type=int, default=2000, help="instances per timed run; default 2000")
    add("--repeats", type=int, default=5, help="timed runs per row; default 5")
    add("--concurrency", type=int, default=100, help="batch, in flight; default 100")
    add("--json", type=Path, help="also write the results here")
    add("--dir", type=Path, help="where the SQLite files go (default: a temp dir)")
    add("--store", choices=("sqlite", "postgres"), default="sqlite", help="or postgres")
    add(
        "--dsn",
        help="a database on the PostgreSQL server, the rows' are made next to it"
        " (default $SAGAKIT_TEST_POSTGRES_URL, else postgres_throughput.py's)",
    )
    add("--db-prefix", default="wf_bench", help="of the rows' PostgreSQL databases")
    return parse_checked(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_start = time.perf_counter(), load_average()
    with tempfile.TemporaryDirectory(prefix="sagakit-wf-bench-", dir=args.dir) as tmp:
        place: SQLite | Postgres = (
            SQLite(Path(tmp))
            if args.store == "sqlite"
            else Postgres(args.dsn, args.db_prefix.lower())
        )
        title, about = asyncio.run(place.about())
        print(
            f"sagakit workflow benchmark: {len(STEPS)} async steps "
            f"{' -> '.join(STEPS)} on {title}; median of "
            f"{args.repeats} run(s) of {args.n} after a warm-up"
        )
        print(
            f"python {platform.python_version()}, {about}, {os.cpu_count()} CPUs; "
            f"load average (1 min) {load_start} at the start",
            flush=True,
        )
        results = [
            asyncio.run(run_row(r, place, args.repeats))
            for r in rows(args.n, args.concurrency, place.hand)
        ]
    by_key = {r.key: r for r in results}
    for r in results:
        if r.floor is not None:
            r.ratio_vs_floor = r.sagas_per_s / by_key[r.floor].sagas_per_s
    print()
    for line in table(results):
        print(line)
    elapsed, load_end = time.perf_counter() - started, load_average()
    print()
    print(
        f"total time {elapsed:,.1f} s; load average (1 min) {load_start} at the "
        f"start, {load_end} at the end (other work on the machine skews the numbers)"
    )
    if args.json is not None:
        meta = {"store": args.store, "n": args.n, "repeats": args.repeats}
        meta |= {"seconds": elapsed, "concurrency": args.concurrency}
        report = {
            "meta": {**meta, "cpus": os.cpu_count()},
            "results": [{**asdict(r), "sagas_per_s": r.sagas_per_s} for r in results],
            "load_average": {"start": load_start, "end": load_end},
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
