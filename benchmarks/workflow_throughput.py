"""Workflow apps (``sagakit.workflow.WorkflowApp``) on SQLite, against a
hand-written floor measured in the same run.

An instance runs three async steps, ``one -> two -> three``: each returns the
call of the next, the last a value. The store is ``SQLiteWorkflowStore`` on a
fresh temp file per row (WAL, ``synchronous=NORMAL``: its defaults). Rows:

wf-seq      one at a time: ``app.start(None, one, i)``, ``app.run_until_idle()``
wf-conc     ``--n`` instances started (not timed), then one timed
            ``run_until_idle()``, ``batch`` = ``max_active`` = ``--concurrency``;
            the steps do not await
wf-spread   wf-conc with steps that first await ``asyncio.sleep(0)`` 0-4 times
            (drawn by a seeded ``random.Random`` per input and step, the same on
            both sides of a comparison): steps a few loop turns apart
floor-seq   the ``sqlite3`` module alone, same file settings: tables instance
            (id, step, state JSON, version, status) and history; a create
            commit, then per step ``BEGIN IMMEDIATE; UPDATE instance; INSERT
            history; COMMIT`` (4 commits), awaiting the same step functions
floor-conc  the floor, ``--concurrency`` instances gathered at a time (a commit
            per step); created first, not timed, as in wf-conc

Figures: instances/s (median of ``--repeats`` timed runs after a warm-up of
``n // 10``), CPU us per instance (``time.process_time``), commits per
instance and per step (``database.commits``), step results per commit
(``app.saves``), and each sagakit row's rate over its floor's (wf-seq over
floor-seq, wf-conc and wf-spread over floor-conc). Printed, and written with
``--json`` as ``against_commit.py`` reads them; never asserted (exit 0).

    python benchmarks/workflow_throughput.py [--n 2000] [--repeats 5]
        [--concurrency 100] [--json out.json] [--dir DIR]
    python benchmarks/against_commit.py HEAD~1 benchmarks/workflow_throughput.py \
        --rounds 3 -- --n 2000 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.workflow import WorkflowApp

# benchmarks/sqlite_throughput.py, also when this script is run from elsewhere
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sqlite_throughput import filesystem, load_average

STEPS = ("one", "two", "three")
SEED = 20261207
MAX_TURNS = 4  # wf-spread: sleep(0)s a step awaits at most
FLOOR_SCHEMA = """
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE TABLE instance (
    id text PRIMARY KEY, step text, state text NOT NULL,
    version integer NOT NULL, status text NOT NULL
);
CREATE TABLE history (
    id integer PRIMARY KEY, instance_id text NOT NULL REFERENCES instance,
    step text NOT NULL, outcome text NOT NULL, detail text, at real NOT NULL
);
"""
CREATE = "INSERT INTO instance VALUES (?, ?, ?, 1, 'pending')"
HISTORY = (
    "INSERT INTO history (instance_id, step, outcome, detail, at) "
    "VALUES (?, ?, ?, ?, ?)"
)
MOVE = (
    "UPDATE instance SET step = ?, state = ?, version = ?, status = ? "
    "WHERE id = ? AND version = ?"
)

Call = Callable[[str, int], Any]  # (next step, input) -> what a step returns
StepFn = Callable[[Any], Awaitable[Any]]
Counters = Callable[[], tuple[int, int, int]]  # commits, results saved, batches


def chain(call: Call, turns: list[list[int]] | None) -> list[StepFn]:
    """The steps ``one -> two -> three``: each returns ``call`` of the next
    with its input, the last the input itself. With ``turns``, step k of
    the instance with input i first awaits ``sleep(0)`` turns[i][k] times."""

    def make(k: int) -> StepFn:
        after = STEPS[k + 1] if k + 1 < len(STEPS) else None

        async def step(input: Any) -> Any:
            if turns is not None:
                for _ in range(turns[input % len(turns)][k]):
                    await asyncio.sleep(0)
            return input if after is None else call(after, input)

        step.__name__ = step.__qualname__ = STEPS[k]
        return step

    return [make(k) for k in range(len(STEPS))]


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
    row: Row, path: Path, turns: list[list[int]] | None, repeats: int
) -> None:
    store = SQLiteWorkflowStore(path)
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


class Floor:
    """The hand-written floor: one ``sqlite3`` connection, a transaction per
    create and per step (the step's guarded by the instance's version)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.executescript(FLOOR_SCHEMA)
        self.steps = {s.__name__: s for s in chain(lambda name, i: (name, i), None)}
        self.commits = self.made = 0

    def commit(self, sql: str, args: tuple[Any, ...], line: tuple[Any, ...]) -> None:
        """``sql`` (changing one row) and a history line, in one transaction."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        if conn.execute(sql, args).rowcount != 1:
            conn.execute("ROLLBACK")
            raise RuntimeError(f"floor: {args} changed no row")
        conn.execute(HISTORY, (*line, time.time()))
        conn.execute("COMMIT")
        self.commits += 1

    def create(self, i: int) -> str:
        self.made += 1
        iid, state = str(self.made), json.dumps({"input": i})
        self.commit(CREATE, (iid, STEPS[0], state), (iid, STEPS[0], "started", state))
        return iid

    async def run(self, iid: str, i: int) -> None:
        step: str | None = STEPS[0]
        value: Any = i
        version = 1
        while step is not None:
            out = await self.steps[step](value)
            after, value = out if isinstance(out, tuple) else (None, out)
            state = json.dumps({"input" if after else "result": value})
            status = "pending" if after else "succeeded"
            detail = json.dumps({"next": after})
            self.commit(
                MOVE,
                (after, state, version + 1, status, iid, version),
                (iid, step, "succeeded", detail),
            )
            step, version = after, version + 1


async def floor_row(row: Row, path: Path, repeats: int) -> None:
    floor = Floor(path)
    conc = row.concurrency

    def counters() -> tuple[int, int, int]:  # a commit per step result
        return floor.commits, floor.commits, floor.commits

    async def run(count: int) -> Sample:
        if conc == 1:
            with timing(counters) as sample:
                for i in range(count):
                    await floor.run(floor.create(i), i)
            return sample
        ids = [floor.create(i) for i in range(count)]
        with timing(counters) as sample:
            for at in range(0, count, conc):
                batch = range(at, min(at + conc, count))
                await asyncio.gather(*(floor.run(ids[i], i) for i in batch))
        return sample

    try:
        await measure(row, run, repeats)
    finally:
        floor.conn.close()


def rows(n: int, c: int) -> list[Row]:
    hand, app = "hand-written sqlite3,", "WorkflowApp,"
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


def run_row(row: Row, db_dir: Path, repeats: int) -> Row:
    path = db_dir / f"{row.key}.db"
    if row.library == "floor":
        asyncio.run(floor_row(row, path, repeats))
    else:
        turns = spread(row.n) if row.key == "wf-spread" else None
        asyncio.run(sagakit_row(row, path, turns, repeats))
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
    args = parser.parse_args(argv)
    if min(args.n, args.repeats, args.concurrency) < 1:
        parser.error("--n, --repeats and --concurrency must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_start = time.perf_counter(), load_average()
    with tempfile.TemporaryDirectory(prefix="sagakit-wf-bench-", dir=args.dir) as tmp:
        db_dir = Path(tmp)
        print(
            f"sagakit workflow benchmark: {len(STEPS)} async steps "
            f"{' -> '.join(STEPS)} on SQLite (WAL, synchronous NORMAL); median of "
            f"{args.repeats} run(s) of {args.n} after a warm-up"
        )
        print(
            f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
            f"{os.cpu_count()} CPUs, db dir {db_dir} ({filesystem(db_dir)}); "
            f"load average (1 min) {load_start} at the start",
            flush=True,
        )
        results = [
            run_row(r, db_dir, args.repeats) for r in rows(args.n, args.concurrency)
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
        meta = {"n": args.n, "repeats": args.repeats, "seconds": elapsed}
        report = {
            "meta": {**meta, "concurrency": args.concurrency, "cpus": os.cpu_count()},
            "results": [{**asdict(r), "sagas_per_s": r.sagas_per_s} for r in results],
            "load_average": {"start": load_start, "end": load_end},
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
