"""Costs at scale: a store holding 100k or 1M sagas, against an empty one.

Builds a store of ``--n`` stored sagas, then prints, each with its ratio:

- operator reads, each timed ``--repeats`` times after a warm-up call (median
  and slowest, in ms) next to the floor, a read of one saga by its full id:
  ``show`` by an 8-character id prefix (``sagakit show``: the saga, its
  history, its sub-sagas), per-status counts (the dashboard's summary, all
  sagas and one saga name) and ``list`` with each filter, an empty status
  and an unknown name included; the target is under 20 ms each;
- ``Orchestrator.recover()`` of ``--unfinished`` unfinished sagas, all of
  one definition, created among the others and behind ``--other`` older
  unfinished sagas of a definition this process does not register: how many
  it resumed in one call, how many are left, and how long it took;
- throughput of a 3-step saga (one at a time, and ``--concurrency`` in
  flight) on the full store against a fresh empty store of the same kind,
  and against a third, ``bare``, empty and keeping no counts (its count
  triggers dropped), the three taking turns for ``--rounds`` rounds: sagas
  per second and CPU microseconds per saga, this process's and (PostgreSQL
  on this machine) the server's. The target is full >= 0.9x of empty;
  empty / bare is what the per-status counts cost on the save path.

Building the store is a benchmark-only fast path (``scale_fill.py``): rows
go straight into the tables, their state and history copied from sagas the
library really ran. The stored sagas: 90% ``succeeded``, 6% ``compensated``,
3% ``failed``, 1% ``compensation_failed`` (none ``compensating``: the empty
status), one in ten (by hundreds) named ``scale_refund`` and the others
``scale_order``. PostgreSQL gets ``VACUUM ANALYZE`` after the build
(autovacuum would run it); SQLite gets nothing (sagakit never runs
``ANALYZE`` there).

Numbers are printed (and written with ``--json``), never asserted.

    python benchmarks/scale_sagas.py --store sqlite --n 1000000
    python benchmarks/scale_sagas.py --store postgres --n 100000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from scale_fill import (
    RECOVERED,
    RUN,
    Plan,
    build_postgres,
    build_sqlite,
    kinds,
    retrying,
)

from sagakit import Orchestrator, SagaStatus, SQLiteStore, admin
from sagakit.errors import SagaNotFound, StoreError
from sagakit.ports.store import SagaStore

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DSN_ENV = "SAGAKIT_TEST_POSTGRES_URL"
TARGET_MS = 20.0
TARGET_THROUGHPUT = 0.9  # full store / empty store
POOL_SIZE = 20
RESTARTS = 5  # attempts of a throughput side after a lost connection


# -- stores ----------------------------------------------------------------------

SIDES = ("full", "empty", "bare")
"""The stores of the throughput rounds: ``full`` holds the ``--n`` sagas,
``empty`` none, ``bare`` none and keeps no counts (its count triggers
dropped): empty / bare is what the counts cost on the save path."""

COUNT_TRIGGERS = {
    "sqlite": [
        f"DROP TRIGGER IF EXISTS sagakit_saga_count_{name}"
        for name in ("insert", "update", "delete", "end", "reopen")  # 0015, 0012
    ],
    "postgres": [
        f"DROP TRIGGER IF EXISTS sagakit_saga_count_{name} ON sagakit_saga"
        for name in ("insert", "update", "delete")
    ],
}
"""What makes the ``bare`` store (benchmark-only: sagakit never drops them)."""


def _next_door(name: str) -> ModuleType:
    """A benchmark module next to this one (only ``--store postgres`` needs
    ``postgres_throughput``, and with it asyncpg)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module(name)


@dataclass
class Stores:
    """Where the stores live (SQLite paths or PostgreSQL URLs by side), and
    how to open them."""

    kind: str
    places: dict[str, str]

    @property
    def full(self) -> str:
        return self.places["full"]

    async def open(self, where: str) -> SagaStore:
        if self.kind == "sqlite":
            return SQLiteStore(where)
        from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415

        return await PostgresStore.connect(where, max_size=POOL_SIZE)

    async def strip_counts(self, where: str) -> None:
        """Drop the count triggers of the store at ``where``."""
        if self.kind == "sqlite":
            import sqlite3  # noqa: PLC0415 - this store only

            with sqlite3.connect(where) as conn:
                for statement in COUNT_TRIGGERS["sqlite"]:
                    conn.execute(statement)
            return
        for statement in COUNT_TRIGGERS["postgres"]:
            await retrying(where, statement)


@asynccontextmanager
async def stores(args: argparse.Namespace) -> AsyncIterator[Stores]:
    if args.store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="sagakit-scale-", dir=args.dir) as tmp:
            yield Stores("sqlite", {side: f"{tmp}/{side}.db" for side in SIDES})
        return
    pg = _next_door("postgres_throughput")
    names = {side: f"{args.db_prefix}_{side}" for side in SIDES}
    for name in names.values():
        await pg.recreate_database(args.dsn, name)
    try:
        yield Stores(
            "postgres",
            {side: pg.database_url(args.dsn, name) for side, name in names.items()},
        )
    finally:
        if not args.keep:
            for name in names.values():
                await pg.recreate_database(args.dsn, name, create=False)


async def build(where: Stores, plan: Plan) -> tuple[float, dict[str, float]]:
    """Migrate the stores, strip the bare one's counts, and fill the full
    one; returns the seconds the filling took and, on PostgreSQL, the ms of
    a count at the steps after the load (``build_postgres``)."""
    for place in where.places.values():
        await (await where.open(place)).close()  # migrates
    await where.strip_counts(where.places["bare"])
    found = await kinds()
    started = time.perf_counter()
    counts: dict[str, float] = {}
    if where.kind == "sqlite":
        build_sqlite(Path(where.full), plan, found)
    else:
        counts = await build_postgres(where.full, plan, found)
    return time.perf_counter() - started, counts


class ServerCPU:
    """CPU seconds of the PostgreSQL backends serving one database, read
    from ``/proc`` (a server on this machine; None elsewhere, and on
    SQLite, whose work is this process's)."""

    def __init__(self, store: SagaStore) -> None:
        self._pool = getattr(getattr(store, "database", None), "pool", None)

    async def seconds(self) -> dict[int, float] | None:
        if self._pool is None:
            return None
        rows = await self._pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        )
        cpu_of = _next_door("postgres_throughput").cpu_of
        found = {pid: cpu_of(pid) for (pid,) in rows}
        if any(seconds is None for seconds in found.values()):
            return None
        return cast("dict[int, float]", found)

    @staticmethod
    def spent(before: dict[int, float] | None, after: dict[int, float] | None) -> float:
        """CPU seconds between two readings (nan if either is missing)."""
        if before is None or after is None:
            return math.nan
        return sum(t - before.get(pid, 0.0) for pid, t in after.items())


# -- operator reads --------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    key: str
    what: str
    runs: list[float]  # seconds
    rows: int

    @property
    def ms(self) -> float:
        return statistics.median(self.runs) * 1000

    @property
    def slowest_ms(self) -> float:
        return max(self.runs) * 1000


async def timed(
    repeats: int, call: Callable[[], Awaitable[int]]
) -> tuple[list[float], int]:
    rows = await call()  # warm-up
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        rows = await call()
        runs.append(time.perf_counter() - started)
    return runs, rows


async def reads(store: SagaStore, plan: Plan, repeats: int) -> list[Timing]:
    (newest,) = await store.list_sagas(limit=1, status=SagaStatus.SUCCEEDED)
    some_id = newest.saga_id
    middle = plan.start + plan.n * plan.spacing / 2

    async def show() -> int:
        detail = await admin.show(store, some_id[:8])
        assert detail.record.saga_id == some_id  # noqa: S101 - an 8-hex clash is ~n/4e9
        return 1 + len(detail.history)

    async def show_missing() -> int:
        try:
            await admin.show(store, "g0000000")
        except SagaNotFound:
            return 0
        raise RuntimeError("g0000000 matched a saga")

    async def get() -> int:
        await store.get(some_id)
        return 1

    def counting(name: str | None) -> Callable[[], Awaitable[int]]:
        async def count() -> int:
            return sum((await store.count_by_status(name)).values())

        return count

    def listing(**filters: Any) -> Callable[[], Awaitable[int]]:
        async def listed() -> int:
            return len(await store.list_sagas(limit=50, **filters))

        return listed

    calls: list[tuple[str, str, Callable[[], Awaitable[int]]]] = [
        ("floor-get", "floor: get one saga by its full id", get),
        ("show-prefix", "show by an 8-char id prefix (saga, history, children)", show),
        ("show-missing", "show by a prefix that matches nothing", show_missing),
        ("count", "counts per status, every saga", counting(None)),
        ("count-name", "counts per status of scale_refund", counting("scale_refund")),
        ("list", "list, no filter (50 newest)", listing()),
        (
            "list-status",
            "list --status succeeded",
            listing(status=SagaStatus.SUCCEEDED),
        ),
        ("list-status-rare", "list --status failed", listing(status=SagaStatus.FAILED)),
        (
            "list-status-empty",
            "list --status compensating (none stored)",
            listing(status=SagaStatus.COMPENSATING),
        ),
        ("list-name", "list --saga scale_refund", listing(saga_name="scale_refund")),
        (
            "list-name-status",
            "list --saga scale_refund --status failed",
            listing(saga_name="scale_refund", status=SagaStatus.FAILED),
        ),
        (
            "list-name-empty-status",
            "list --saga scale_refund --status compensating",
            listing(saga_name="scale_refund", status=SagaStatus.COMPENSATING),
        ),
        (
            "list-name-unknown",
            "list --saga nothing (no such saga)",
            listing(saga_name="nothing"),
        ),
        (
            "list-before",
            "list created before the middle",
            listing(created_before=middle),
        ),
        ("list-waiting", "list --waiting", listing(waiting=True)),
    ]
    found = []
    for key, what, call in calls:
        runs, rows = await timed(repeats, call)
        found.append(Timing(key, what, runs, rows))
    return found


# -- recovery --------------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    unfinished: int
    resumed: int
    left: int
    seconds: float


async def recover(store: SagaStore, plan: Plan) -> Recovery:
    orchestrator = Orchestrator(store, [RECOVERED])
    started = time.perf_counter()
    resumed = await orchestrator.recover()
    await orchestrator.drain()
    seconds = time.perf_counter() - started
    await orchestrator.stop_driving()
    counts = await store.count_by_status(RECOVERED.name)
    left = counts.get(SagaStatus.RUNNING, 0) + counts.get(SagaStatus.COMPENSATING, 0)
    return Recovery(plan.unfinished, len(resumed), left, seconds)


# -- throughput ------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """One throughput run: sagas per second of wall clock, and CPU
    microseconds per saga of this process and of the PostgreSQL backends
    (what the load of other processes moves less; nan where unknown)."""

    wall: float
    cpu_us: float
    server_us: float


async def sagas_per_s(
    orchestrator: Orchestrator, n: int, concurrency: int, server: ServerCPU
) -> Rate:
    loop = asyncio.get_running_loop()
    gc.collect()
    before = await server.seconds()
    started, cpu = loop.time(), time.process_time()
    for first in range(0, n, concurrency):
        batch = min(concurrency, n - first)
        results = await asyncio.gather(*(orchestrator.run(RUN) for _ in range(batch)))
        if any(r.status is not SagaStatus.SUCCEEDED for r in results):
            raise RuntimeError("a saga did not succeed")
    wall, used = loop.time() - started, time.process_time() - cpu
    spent = ServerCPU.spent(before, await server.seconds())
    return Rate(n / wall, used / n * 1e6, spent / n * 1e6)


async def throughput(
    where: Stores, n: int, concurrency: int, rounds: int
) -> dict[str, dict[str, list[Rate]]]:
    """Rates by row (seq, conc) and side (full, empty, bare), the stores
    taking turns (each round starts with the next); one store is open at a
    time (a PostgreSQL server's connections are shared with whatever else
    runs on it)."""
    figures: dict[str, dict[str, list[Rate]]] = {"seq": {}, "conc": {}}
    for round_ in range(rounds):
        first = round_ % len(SIDES)
        for side in SIDES[first:] + SIDES[:first]:
            for row, rate in (await _side(where, side, n, concurrency)).items():
                figures[row].setdefault(side, []).append(rate)
    return figures


async def _side(where: Stores, side: str, n: int, concurrency: int) -> dict[str, Rate]:
    """One side's rows of a round; run again from the start after a lost
    connection (other test suites restart a shared server)."""
    for attempt in range(RESTARTS):
        try:
            store = await where.open(where.places[side])
            orchestrator = Orchestrator(store, [RUN])
            server = ServerCPU(store)
            try:
                await sagas_per_s(orchestrator, max(1, n // 10), 1, server)  # warm-up
                return {
                    row: await sagas_per_s(orchestrator, n, conc, server)
                    for row, conc in (("seq", 1), ("conc", concurrency))
                }
            finally:
                with contextlib.suppress(StoreError, OSError):
                    await orchestrator.close()
        except (StoreError, OSError) as exc:
            if attempt == RESTARTS - 1:
                raise
            print(f"note: {type(exc).__name__} on the {side} store; running it again")
            await asyncio.sleep(3)
    raise AssertionError("unreachable")


# -- report ----------------------------------------------------------------------


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--n", type=int, default=100_000, help="stored sagas; default 100000"
    )
    parser.add_argument(
        "--unfinished",
        type=int,
        default=10_000,
        help="of them, unfinished sagas recover() resumes; default 10000",
    )
    parser.add_argument(
        "--other",
        type=int,
        default=1_200,
        help="of them, older unfinished sagas of an unregistered definition;"
        " default 1200",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per read")
    parser.add_argument(
        "--throughput-n", type=int, default=500, help="sagas per throughput run"
    )
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    parser.add_argument(
        "--dsn",
        default=os.environ.get(DSN_ENV) or DEFAULT_DSN,
        help=f"PostgreSQL server (default ${DSN_ENV} or {DEFAULT_DSN}); the "
        "databases PREFIX_full and PREFIX_empty are created next to it",
    )
    parser.add_argument("--db-prefix", default="scale")
    parser.add_argument(
        "--keep", action="store_true", help="keep the PostgreSQL databases"
    )
    parser.add_argument("--dir", type=Path, help="directory of the SQLite files")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    for name in ("n", "repeats", "throughput_n", "concurrency", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.unfinished < 0 or args.other < 0 or args.unfinished + args.other > args.n:
        parser.error("--unfinished and --other must be >= 0 and add up to at most --n")
    if not args.db_prefix.replace("_", "").isalnum():
        parser.error("--db-prefix takes letters, digits and underscores")
    return args


def print_reads(timings: list[Timing]) -> list[dict[str, Any]]:
    floor = timings[0].ms
    print()
    print(
        f"{'read':<23} {'what':<52} {'rows':>7} {'ms':>8} {'slowest':>8} "
        f"{'/floor':>8}  < {TARGET_MS:.0f} ms"
    )
    rows = []
    for t in timings:
        shown = "-" if t.key == "floor-get" else verdict(t.ms < TARGET_MS)
        print(
            f"{t.key:<23} {t.what:<52} {t.rows:>7,} {t.ms:>8.2f} "
            f"{t.slowest_ms:>8.2f} {t.ms / floor:>7.1f}x  {shown}"
        )
        rows.append(
            {
                "key": t.key,
                "library": "sagakit",
                "what": t.what,
                "ms": t.ms,
                "slowest_ms": t.slowest_ms,
                "per_s": 1000 / t.ms,
                "rows": t.rows,
            }
        )
    return rows


def print_recovery(r: Recovery, other: int) -> dict[str, Any]:
    print()
    print(
        f"recover(): resumed {r.resumed:,} of {r.unfinished:,} unfinished sagas "
        f"in one call ({r.resumed / max(1, r.unfinished):.2f}x), {r.left:,} left "
        f"unfinished; {r.seconds:,.2f} s with drain "
        f"({r.resumed / r.seconds:,.0f} sagas/s); behind {other:,} older "
        "unfinished sagas of another definition: "
        f"{verdict(r.resumed == r.unfinished and r.left == 0)}"
    )
    return {
        "key": "recover",
        "library": "sagakit",
        "resumed": r.resumed,
        "unfinished": r.unfinished,
        "left": r.left,
        "seconds": r.seconds,
        "sagas_per_s": r.resumed / r.seconds,
    }


def print_throughput(
    figures: dict[str, dict[str, list[Rate]]], concurrency: int
) -> list[dict[str, Any]]:
    print()
    print(
        f"{'throughput':<10} {'in flight':>9} {'empty':>8} {'full':>8} "
        f"{'full/empty':>10} {'bare':>8} {'empty/bare':>10}   "
        f"{'cpu us: empty':>13} {'full':>6} {'bare':>6}   "
        f"{'server us: empty':>16} {'full':>6} {'bare':>6}"
    )
    rows = []
    for row, by_side in figures.items():
        wall = {s: statistics.median(r.wall for r in by_side[s]) for s in SIDES}
        cpu = {s: statistics.median(r.cpu_us for r in by_side[s]) for s in SIDES}
        server = {s: statistics.median(r.server_us for r in by_side[s]) for s in SIDES}
        ratio = wall["full"] / wall["empty"]
        print(
            f"{row:<10} {1 if row == 'seq' else concurrency:>9} "
            f"{wall['empty']:>8,.0f} {wall['full']:>8,.0f} {ratio:>9.2f}x "
            f"{wall['bare']:>8,.0f} {wall['empty'] / wall['bare']:>9.2f}x   "
            f"{cpu['empty']:>13,.0f} {cpu['full']:>6,.0f} {cpu['bare']:>6,.0f}   "
            f"{server['empty']:>16,.0f} {server['full']:>6,.0f} "
            f"{server['bare']:>6,.0f}"
        )
        print(
            f"{'':<21}full/empty >= {TARGET_THROUGHPUT}x (wall): "
            f"{verdict(ratio >= TARGET_THROUGHPUT)}; CPU per saga full - empty: "
            f"{cpu['full'] - cpu['empty']:+,.0f} us here, "
            f"{server['full'] - server['empty']:+,.0f} us on the server; "
            f"the counts (empty - bare): {cpu['empty'] - cpu['bare']:+,.0f} us here, "
            f"{server['empty'] - server['bare']:+,.0f} us on the server"
        )
        rows.extend(
            {
                "key": f"{row}-{side}",
                "library": "sagakit",
                "sagas_per_s": wall[side],
                "cpu_us_per_saga": cpu[side],
                "server_us_per_saga": None
                if math.isnan(server[side])
                else server[side],
                "runs": [r.wall for r in by_side[side]],
            }
            for side in SIDES
        )
    print(
        "sagas per second of wall clock; CPU microseconds per saga of this "
        "process and of the PostgreSQL backends (nan: not measured; on SQLite "
        "the store's work is this process's); medians of the rounds. full: "
        "the stored sagas, empty: none, bare: none and no count triggers"
    )
    return rows


async def run(args: argparse.Namespace) -> tuple[float, list[dict[str, Any]]]:
    """Build, measure and print; the build's seconds and the JSON rows."""
    plan = Plan(args.n, args.unfinished, args.other)
    async with stores(args) as where:
        built, counts = await build(where, plan)
        print(
            f"built {plan.n:,} stored sagas in {built:,.1f} s "
            f"({plan.n / built:,.0f}/s, history included)"
        )
        if counts:
            print(
                "a count (ms, best of 3) "
                + "; ".join(f"{step}: {ms:,.2f}" for step, ms in counts.items())
                + " (until a vacuum a count reads the deleted count changes)"
            )
        store = await where.open(where.full)
        try:
            rows = print_reads(await reads(store, plan, args.repeats))
            rows.append(print_recovery(await recover(store, plan), plan.other))
        finally:
            await store.close()
        figures = await throughput(
            where, args.throughput_n, args.concurrency, args.rounds
        )
        rows += print_throughput(figures, args.concurrency)
    return built, rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = load_average()
    started = time.perf_counter()
    print(
        f"sagakit at scale on {args.store}: {args.n:,} stored sagas, "
        f"{args.unfinished:,} unfinished to recover; python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs; reads: median of "
        f"{args.repeats} after a warm-up; throughput: {args.throughput_n} sagas "
        f"per run, median of {args.rounds} rounds"
    )
    built, rows = asyncio.run(run(args))
    load = load_average()
    elapsed = time.perf_counter() - started
    print()
    print(
        f"total time {elapsed:,.1f} s; load average {load_at_start} at the start, "
        f"{load} at the end (other work on the machine skews the numbers)"
    )
    if args.json is not None:
        meta = {
            "store": args.store,
            "n": args.n,
            "unfinished": args.unfinished,
            "built_seconds": built,
            "seconds": elapsed,
            "load_average": {"start": load_at_start, "end": load},
        }
        args.json.write_text(
            json.dumps({"meta": meta, "results": rows}, indent=2) + "\n"
        )
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
