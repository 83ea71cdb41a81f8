"""Throughput of one ``Worker`` claiming quick sagas at a given ``max_active``.

``--n`` sagas of three trivial ``async`` steps are submitted (untimed); then a
``Worker`` with ``max_active`` M claims and drives them, timed from its start
until the last saga's last step ran. Next to it, on the same store, a floor
without a claim loop: the same saga run in this process with M in flight
(``Orchestrator.run`` behind a semaphore of M). Rows:

worker-M   ``Worker(max_active=M, poll_interval=--poll-interval)``
inproc-M   ``Orchestrator.run``, M in flight: what M concurrent sagas cost

Each row is the median of ``--repeats`` timed runs after a warm-up of
``n // 10``. A worker that waits a poll interval whenever it is full tops out
near ``M / poll_interval`` sagas/s; the line under the table prints that cap.
Numbers are printed (and written with ``--json``), never asserted.

    python benchmarks/worker_throughput.py [--store sqlite|postgres] [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step
from sagakit.ports.store import SagaStore
from sagakit.runtime import Worker

DEFAULT_DSN = os.environ.get(
    "SAGAKIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
DATABASE = f"bench_worker_{os.getpid()}"
SUBMIT_BATCH = 50


class Tally:
    """Counts sagas whose last step ran; ``all_done`` once ``target`` did."""

    def __init__(self) -> None:
        self.done = 0
        self.target = 0
        self.all_done = asyncio.Event()

    def expect(self, count: int) -> None:
        self.done, self.target = 0, count
        self.all_done.clear()

    async def last(self, ctx: Any) -> None:
        self.done += 1
        if self.done >= self.target:
            self.all_done.set()


async def nothing(ctx: Any) -> None:
    return None


def quick_saga(tally: Tally) -> Saga[Any]:
    return Saga(
        "bench_worker",
        [
            Step("one", nothing, compensate=nothing),
            Step("two", nothing, compensate=nothing),
            Step("three", tally.last, compensate=nothing),
        ],
    )


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    max_active: int
    runs: list[float]

    @property
    def sagas_per_s(self) -> float:
        return statistics.median(self.runs)


Timed = Callable[[int], Awaitable[float]]  # n -> seconds


async def measure(timed: Timed, n: int, repeats: int) -> list[float]:
    await timed(max(1, n // 10))
    runs = []
    for _ in range(repeats):
        gc.collect()
        runs.append(n / await timed(n))
    return runs


def worker_run(store: SagaStore, tally: Tally, m: int, poll: float) -> Timed:
    saga = quick_saga(tally)
    producer = Orchestrator(store, [saga])

    async def timed(n: int) -> float:
        for first in range(0, n, SUBMIT_BATCH):
            count = min(SUBMIT_BATCH, n - first)
            await asyncio.gather(*(producer.submit(saga) for _ in range(count)))
        tally.expect(n)
        worker = Worker(store, [saga], max_active=m, poll_interval=poll)
        start = time.perf_counter()
        running = asyncio.create_task(worker.run())
        await tally.all_done.wait()
        elapsed = time.perf_counter() - start
        worker.stop()
        await running
        if worker.claimed != n:
            raise RuntimeError(f"worker claimed {worker.claimed} of {n} sagas")
        return elapsed

    return timed


def inproc_run(store: SagaStore, tally: Tally, m: int) -> Timed:
    saga = quick_saga(tally)
    orchestrator = Orchestrator(store, [saga])

    async def timed(n: int) -> float:
        tally.expect(n)
        window = asyncio.Semaphore(m)

        async def one() -> None:
            async with window:
                result = await orchestrator.run(saga)
            if result.status is not SagaStatus.SUCCEEDED:
                raise RuntimeError(f"saga ended {result.status}")

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - start

    return timed


# -- stores --------------------------------------------------------------------


async def admin_sql(dsn: str, statement: str) -> None:
    import asyncpg  # noqa: PLC0415 - only --store postgres needs the driver

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def open_bench_store(args: argparse.Namespace, where: Path) -> SagaStore:
    if args.store == "sqlite":
        return SQLiteStore(where / f"worker-{time.monotonic_ns()}.db")
    from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415

    url = urlunsplit(urlsplit(args.dsn)._replace(path=f"/{DATABASE}"))
    return await PostgresStore.connect(url, max_size=20)


async def run_rows(args: argparse.Namespace, where: Path) -> list[Row]:
    rows = []
    for m in args.max_active:
        for key, label in (
            (f"worker-{m}", f"Worker, max_active={m}"),
            (f"inproc-{m}", f"Orchestrator.run, {m} in flight"),
        ):
            store = await open_bench_store(args, where)
            tally = Tally()
            timed = (
                worker_run(store, tally, m, args.poll_interval)
                if key.startswith("worker")
                else inproc_run(store, tally, m)
            )
            try:
                runs = await measure(timed, args.n, args.repeats)
            finally:
                await store.close()
            rows.append(Row(key, label, m, runs))
    return rows


# -- report --------------------------------------------------------------------


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def table(rows: list[Row], poll: float) -> list[str]:
    floors = {r.max_active: r for r in rows if r.key.startswith("inproc")}
    lines = [
        f"| {'row':<12} | {'what':<32} | {'sagas/s':>8} | {'runs min-max':>13} "
        f"| {'worker/inproc':>13} |",
        f"| {'-' * 12} | {'-' * 32} | {'-' * 7}: | {'-' * 12}: | {'-' * 12}: |",
    ]
    for r in rows:
        floor = floors.get(r.max_active)
        ratio = (
            f"{r.sagas_per_s / floor.sagas_per_s:.2f}x"
            if r.key.startswith("worker") and floor is not None
            else "-"
        )
        spread = f"{min(r.runs):,.0f}-{max(r.runs):,.0f}"
        lines.append(
            f"| {r.key:<12} | {r.label:<32} | {r.sagas_per_s:>8,.0f} | "
            f"{spread:>13} | {ratio:>13} |"
        )
    caps = ", ".join(f"{m} -> {m / poll:,.0f}/s" for m in sorted(floors))
    lines.append(f"a worker sleeping {poll} s whenever full would top out at {caps}")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL server")
    parser.add_argument("--n", type=int, default=2000, help="sagas per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--max-active",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[50, 200],
        help="comma-separated, default 50,200",
    )
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--dir", type=Path, default=None, help="for SQLite files")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1 or min(args.max_active) < 1:
        parser.error("--n, --repeats and --max-active must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = load_average()
    started = time.perf_counter()
    print(
        f"one Worker on {args.store}: 3-step saga of trivial async steps, "
        f"n={args.n}, median of {args.repeats} run(s) after a warm-up; "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    admin = args.dsn
    if args.store == "postgres":
        asyncio.run(admin_sql(admin, f'DROP DATABASE IF EXISTS "{DATABASE}"'))
        asyncio.run(admin_sql(admin, f'CREATE DATABASE "{DATABASE}"'))
    try:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            rows = asyncio.run(run_rows(args, Path(tmp)))
    finally:
        if args.store == "postgres":
            drop = f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'
            asyncio.run(admin_sql(admin, drop))
    print()
    for line in table(rows, args.poll_interval):
        print(line)
    elapsed = time.perf_counter() - started
    load = load_average()
    print(
        f"total time {elapsed:,.1f} s; load average {load_at_start} at the start, "
        f"{load} at the end"
    )
    if args.json is not None:
        report = {
            "meta": {
                "store": args.store,
                "n": args.n,
                "repeats": args.repeats,
                "poll_interval": args.poll_interval,
                "load_average": {"start": load_at_start, "end": load},
            },
            "results": [
                {
                    "key": r.key,
                    "library": "sagakit",
                    "label": r.label,
                    "max_active": r.max_active,
                    "sagas_per_s": r.sagas_per_s,
                    "runs": r.runs,
                }
                for r in rows
            ],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
