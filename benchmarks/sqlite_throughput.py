"""Throughput of a 3-step saga: saga-py (in memory) against sagakit (memory, SQLite).

Every saga has three trivial steps, each with a compensation. Scenarios:

a  saga-py, in memory (its only mode), sequential
b  sagakit with ``InMemoryStore``, sequential
c  sagakit on SQLite (temp file, WAL, ``synchronous=NORMAL``), sequential
d  sagakit on SQLite with ``synchronous=FULL`` (an fsync per commit), sequential
e  sagakit on SQLite, ``--concurrency`` sagas in flight (``asyncio.gather``)
f  failure path: step 3 raises, steps 2 and 1 are compensated
g  the failure path with ``--concurrency`` sagas in flight
h, i  sagakit with ``InMemoryStore`` and ``--concurrency`` sagas in flight
   (success, failure): no store work at all, the ceiling of every durable row
   with as many in flight (the same one thread runs the engine either way)
j  sagakit on SQLite FULL, ``--concurrency`` sagas in flight

The hand-written floor (``floor.py``) runs on SQLite NORMAL and FULL, one at a
time and with ``--concurrency`` in flight; each sagakit row on SQLite prints
its rate over the floor's with the same mode, path and sagas in flight. The
``floor-writes-*`` rows make the floor's writes alone, one saga at a time
(its commits and statements, no step awaited): with the in-memory rows, an
estimate of the most sagakit can reach on SQLite one at a time (``ceiling:``
lines), since it commits as often and writes a superset of the floor's rows.

sagakit rows come twice: with ``async def`` steps and with plain functions, which
the orchestrator runs through ``asyncio.to_thread``. Each row is the median of
``--repeats`` timed runs after one warm-up run. Numbers are printed (and written
with ``--json``), never asserted: the exit status is 0 whatever they are.

    python benchmarks/sqlite_throughput.py [--n 2000] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.ports.store import SagaStore

# benchmarks/floor.py, also when this script is run from elsewhere (runpy)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import SQLiteFloor
from floor import measure as floor_measure

try:
    import saga as saga_py
except ImportError:  # the `bench` extra is not installed
    saga_py = None

TARGET = 500.0  # durable SQLite, sequential, sagas/s
STEPS = 3
# Scenarios d, e and f run n // HEAVY_DIVISOR sagas so that a default run stays
# under a minute on two cores; each row prints the n it used.
HEAVY_DIVISOR = 5


# -- step functions ------------------------------------------------------------


class Boom(Exception):
    """The failure of step 3 in scenario f."""


def act(ctx: Any) -> None:
    return None


def undo(ctx: Any) -> None:
    return None


def fail(ctx: Any) -> None:
    raise Boom("step 3 failed")


async def act_async(ctx: Any) -> None:
    return None


async def undo_async(ctx: Any) -> None:
    return None


async def fail_async(ctx: Any) -> None:
    raise Boom("step 3 failed")


def sagakit_saga(*, is_async: bool, failing: bool) -> Saga[Any]:
    ok, comp, bad = (
        (act_async, undo_async, fail_async) if is_async else (act, undo, fail)
    )
    last = bad if failing else ok
    return Saga(
        f"bench_{'async' if is_async else 'sync'}_{'fail' if failing else 'ok'}",
        [
            Step("one", ok, compensate=comp),
            Step("two", ok, compensate=comp),
            Step("three", last, compensate=comp),
        ],
    )


# -- results -------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str  # first column of the table; stable, the smoke test reads it
    label: str
    library: str  # "saga-py", "sagakit" or "floor" (hand-written: benchmarks/floor.py)
    store: str  # "-", "memory", "sqlite-normal" or "sqlite-full"
    steps: str  # "sync" or "async"
    path: str  # "success" or "failure"
    concurrency: int
    n: int


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    runs: list[float]  # sagas/s of each timed run
    commits_per_saga: float | None
    cpu_us_per_saga: float | None = None
    """This process's CPU time (``time.process_time``) per saga over the timed
    runs, in microseconds: steadier than sagas/s on a shared machine."""

    @property
    def sagas_per_s(self) -> float:
        return statistics.median(self.runs)


Timed = Callable[[int], tuple[float, int]]  # n -> (seconds, commits)


def measure(timed: Timed, n: int, repeats: int) -> tuple[list[float], float]:
    """One warm-up run, then ``repeats`` timed runs of ``n`` sagas each:
    their sagas/s and the CPU microseconds per saga."""
    timed(max(1, n // 10))
    runs: list[float] = []
    cpu = 0.0
    for _ in range(repeats):
        gc.collect()
        cpu -= time.process_time()
        seconds, _ = timed(n)
        cpu += time.process_time()
        runs.append(n / seconds)
    return runs, cpu / (n * repeats) * 1e6


# -- saga-py -------------------------------------------------------------------


def sagapy_runner(*, failing: bool) -> Timed:
    assert saga_py is not None  # noqa: S101 - callers check first
    compensated = [0]

    def undo_counted() -> None:
        compensated[0] += 1

    builder = saga_py.SagaBuilder()
    builder.action(lambda: None, undo_counted).action(lambda: None, undo_counted)
    builder.action(_raise_boom if failing else (lambda: None), undo_counted)
    saga = builder.build()  # built once, like a sagakit definition

    # saga-py raises SagaError (a BaseException) after compensating, and it
    # compensates the failed action too: 3 compensations where sagakit runs 2.
    try:
        saga.execute()
    except saga_py.SagaError:
        if not failing or compensated[0] != STEPS:
            raise
    else:
        if failing:
            raise RuntimeError("saga-py did not report the failure")

    def run_ok(n: int) -> tuple[float, int]:
        execute = saga.execute
        start = time.perf_counter()
        for _ in range(n):
            execute()
        return time.perf_counter() - start, 0

    def run_failing(n: int) -> tuple[float, int]:
        execute, error = saga.execute, saga_py.SagaError
        failures = 0
        start = time.perf_counter()
        for _ in range(n):
            try:
                execute()
            except error:
                failures += 1
        elapsed = time.perf_counter() - start
        if failures != n:
            raise RuntimeError(f"saga-py failed {failures} of {n} sagas")
        return elapsed, 0

    return run_failing if failing else run_ok


def _raise_boom() -> None:
    raise Boom("step 3 failed")


# -- sagakit -------------------------------------------------------------------


def measure_sagakit(
    make_store: Callable[[], SagaStore],
    *,
    is_async: bool,
    failing: bool,
    concurrency: int,
    n: int,
    repeats: int,
) -> tuple[list[float], float, float]:
    """Run warm-up and repeats in one event loop on one store and
    orchestrator: sagas/s per run, commits and CPU microseconds per saga."""
    saga = sagakit_saga(is_async=is_async, failing=failing)
    expected = SagaStatus.COMPENSATED if failing else SagaStatus.SUCCEEDED

    async def main() -> tuple[list[float], float, float]:
        store = make_store()
        orchestrator = Orchestrator(store, [saga])
        loop = asyncio.get_running_loop()

        async def timed(count: int) -> tuple[float, int]:
            before = store.commits
            start = loop.time()
            if concurrency == 1:
                for _ in range(count):
                    result = await orchestrator.run(saga)
                    if result.status is not expected:
                        raise RuntimeError(f"saga ended {result.status}")
            else:
                for first in range(0, count, concurrency):
                    batch = min(concurrency, count - first)
                    results = await asyncio.gather(
                        *(orchestrator.run(saga) for _ in range(batch))
                    )
                    if any(r.status is not expected for r in results):
                        raise RuntimeError("a saga ended in the wrong status")
            return loop.time() - start, store.commits - before

        try:
            await timed(max(1, n // 10))
            runs: list[float] = []
            commits = 0
            cpu = 0.0
            for _ in range(repeats):
                gc.collect()
                cpu -= time.process_time()
                seconds, delta = await timed(n)
                cpu += time.process_time()
                runs.append(n / seconds)
                commits += delta
            done = n * repeats
            return runs, commits / done, cpu / done * 1e6
        finally:
            await orchestrator.close()

    return asyncio.run(main())


async def _to_thread_round_trip(calls: int) -> float:
    """Microseconds for one ``await asyncio.to_thread(f)`` of a no-op."""
    await asyncio.to_thread(act, None)
    start = time.perf_counter()
    for _ in range(calls):
        await asyncio.to_thread(act, None)
    return (time.perf_counter() - start) / calls * 1e6


# -- the scenario list -----------------------------------------------------------


def scenarios(n: int, concurrency: int) -> list[Scenario]:
    heavy = max(1, n // HEAVY_DIVISOR)
    rows: list[Scenario] = [
        Scenario("a", "saga-py, memory", "saga-py", "-", "sync", "success", 1, n)
    ]
    sagakit_rows = [
        ("b", "sagakit, InMemoryStore", "memory", "success", 1, n),
        ("c", "sagakit, SQLite NORMAL", "sqlite-normal", "success", 1, n),
        ("d", "sagakit, SQLite FULL", "sqlite-full", "success", 1, heavy),
        (
            "e",
            f"sagakit, SQLite NORMAL, {concurrency} in flight",
            "sqlite-normal",
            "success",
            concurrency,
            heavy,
        ),
        (
            "h",
            f"sagakit, InMemoryStore, {concurrency} in flight",
            "memory",
            "success",
            concurrency,
            heavy,
        ),
        (
            "i",
            f"sagakit, InMemoryStore, {concurrency} in flight",
            "memory",
            "failure",
            concurrency,
            heavy,
        ),
        (
            "j",
            f"sagakit, SQLite FULL, {concurrency} in flight",
            "sqlite-full",
            "success",
            concurrency,
            heavy,
        ),
    ]
    for key, label, store, path, conc, count in sagakit_rows:
        for steps in ("async", "sync"):
            rows.append(
                Scenario(
                    f"{key}-{steps}", label, "sagakit", store, steps, path, conc, count
                )
            )
    rows.append(
        Scenario(
            "f-saga-py", "saga-py, memory", "saga-py", "-", "sync", "failure", 1, n
        )
    )
    for store, label in (
        ("memory", "sagakit, InMemoryStore"),
        ("sqlite-normal", "sagakit, SQLite NORMAL"),
    ):
        short = store.split("-")[0]
        for steps in ("async", "sync"):
            rows.append(
                Scenario(
                    f"f-{short}-{steps}",
                    label,
                    "sagakit",
                    store,
                    steps,
                    "failure",
                    1,
                    heavy,
                )
            )
    for steps in ("async", "sync"):
        rows.append(
            Scenario(
                f"g-{steps}",
                f"sagakit, SQLite NORMAL, {concurrency} in flight",
                "sagakit",
                "sqlite-normal",
                steps,
                "failure",
                concurrency,
                heavy,
            )
        )
    for mode, conc in (("seq", 1), ("conc", concurrency)):
        for path, short in (("success", "ok"), ("failure", "fail")):
            rows.append(
                Scenario(
                    f"floor-{mode}-{short}",
                    "hand-written, sqlite3, a commit per transition"
                    + (f", {conc} in flight" if conc > 1 else ""),
                    "floor",
                    "sqlite-normal",
                    "async",
                    path,
                    conc,
                    n if path == "success" and conc == 1 else heavy,
                )
            )
    for path, short in (("success", "ok"), ("failure", "fail")):
        rows.append(
            Scenario(
                f"floor-writes-seq-{short}",
                "the floor's writes alone: its commits and statements, no step",
                "floor-writes",
                "sqlite-normal",
                "-",
                path,
                1,
                n if path == "success" else heavy,
            )
        )
    for mode, conc in (("seq", 1), ("conc", concurrency)):
        rows.append(
            Scenario(
                f"floor-full-{mode}-ok",
                "hand-written, sqlite3 FULL, a commit per transition"
                + (f", {conc} in flight" if conc > 1 else ""),
                "floor",
                "sqlite-full",
                "async",
                "success",
                conc,
                heavy,
            )
        )
    return rows


def run_scenario(s: Scenario, repeats: int, db_dir: Path) -> Result:
    if s.library == "saga-py":
        runs, cpu = measure(sagapy_runner(failing=s.path == "failure"), s.n, repeats)
        return Result(s, runs, None, cpu)
    if s.library in ("floor", "floor-writes"):
        return measure_floor(s, repeats, db_dir)

    def make_store() -> SagaStore:
        if s.store == "memory":
            return InMemoryStore()
        path = db_dir / f"{s.key}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return SQLiteStore(path, synchronous=s.store.removeprefix("sqlite-"))

    runs, commits, cpu = measure_sagakit(
        make_store,
        is_async=s.steps == "async",
        failing=s.path == "failure",
        concurrency=s.concurrency,
        n=s.n,
        repeats=repeats,
    )
    return Result(s, runs, commits, cpu)


def measure_floor(s: Scenario, repeats: int, db_dir: Path) -> Result:
    """The hand-written floor (benchmarks/floor.py), measured like sagakit."""
    floor = SQLiteFloor(str(db_dir / f"{s.key}.db"), s.store.removeprefix("sqlite-"))
    runs, commits, cpu = asyncio.run(
        floor_measure(
            floor,
            s.n,
            repeats,
            s.concurrency,
            failing=s.path == "failure",
            steps=s.library == "floor",
        )
    )
    return Result(s, runs, commits, cpu)


Floors = dict[tuple[str, int, str], Result]
"""The floor rows by (store, sagas in flight, path)."""


def floor_of(result: Result, floors: Floors) -> float | None:
    """sagakit's rate over the floor's on the same SQLite mode, with as many
    in flight on the same path; for an in-memory row, over the NORMAL
    floor's (the ceiling of the durable rows)."""
    s = result.scenario
    if s.library != "sagakit":
        return None
    store = "sqlite-normal" if s.store == "memory" else s.store
    return ratio(result, floors.get((store, s.concurrency, s.path)))


def per_commit(result: Result) -> str:
    """Saga transitions per commit (4 per successful saga, 6 per compensated)."""
    if not result.commits_per_saga:
        return "-"
    transitions = 4 if result.scenario.path == "success" else 6
    return f"{transitions / result.commits_per_saga:.1f}"


# -- report --------------------------------------------------------------------


def ratio(result: Result, baseline: Result | None) -> float | None:
    if baseline is None:
        return None
    return result.sagas_per_s / baseline.sagas_per_s


def format_ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 1:
        return f"{value:.2f}x"
    return f"{value:.4f}x (1/{1 / value:,.0f})"


def table(
    results: list[Result],
    baselines: dict[str, Result],
    floors: Floors,
) -> list[str]:
    header = (
        "scenario",
        "what",
        "steps",
        "path",
        "in flight",
        "n",
        "sagas/s",
        "cpu us/saga",
        "commits/saga",
        "transitions/commit",
        "vs floor",
        "vs saga-py",
    )
    rows = [header]
    for r in results:
        s = r.scenario
        commits = "-" if r.commits_per_saga is None else f"{r.commits_per_saga:.2f}"
        to_floor = floor_of(r, floors)
        rows.append(
            (
                s.key,
                s.label,
                s.steps,
                s.path,
                str(s.concurrency),
                str(s.n),
                f"{r.sagas_per_s:,.0f}",
                "-" if r.cpu_us_per_saga is None else f"{r.cpu_us_per_saga:,.1f}",
                commits,
                per_commit(r),
                "-" if to_floor is None else f"{to_floor:.2f}x",
                "-"
                if s.library.startswith("floor")
                else format_ratio(ratio(r, baselines.get(s.path))),
            )
        )
    numeric = {4, 5, 6, 7, 8, 9, 10}
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return lines


def target_check(results: list[Result]) -> tuple[str, dict[str, float]]:
    rates = {
        r.scenario.steps: r.sagas_per_s
        for r in results
        if r.scenario.key.startswith("c-")
    }
    verdict = "PASS" if rates and min(rates.values()) >= TARGET else "MISS"
    detail = ", ".join(f"{steps} steps {rate:,.0f}" for steps, rate in rates.items())
    line = (
        f"target: durable SQLite >= {TARGET:.0f} sagas/s sequential "
        f"(scenario c; {detail}): {verdict}"
    )
    return line, rates


def to_thread_cost(results: list[Result]) -> float | None:
    """Extra microseconds per step call when steps are sync (memory store)."""
    by_key = {r.scenario.key: r for r in results}
    sync, async_ = by_key.get("b-sync"), by_key.get("b-async")
    if sync is None or async_ is None:
        return None
    return (1 / sync.sagas_per_s - 1 / async_.sagas_per_s) / STEPS * 1e6


def filesystem(path: Path) -> str:
    """The filesystem type of ``path`` on Linux (fsync cost depends on it)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if (
            len(fields) > 2
            and resolved.startswith(fields[1])
            and len(fields[1]) > len(best)
        ):
            best, kind = fields[1], fields[2]
    return kind


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n",
        type=int,
        default=2000,
        help=f"sagas per timed run (d, e, f run n // {HEAVY_DIVISOR}); default 2000",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per row; default 5"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="sagas in flight in scenario e; default 50",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--dir",
        type=Path,
        help="directory for the SQLite files (default: a fresh temp directory)",
    )
    args = parser.parse_args(argv)
    for name in ("n", "repeats", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def load_average() -> str:
    """The 1-minute load average, or "n/a" where the OS has none."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def floor_targets(results: list[Result], floors: Floors) -> list[str]:
    """sagakit (async steps, SQLite NORMAL) against the hand-written floor:
    >= 0.8x one at a time, >= 1.5x with sagas in flight (group commit)."""
    lines = []
    for r in results:
        s = r.scenario
        value = floor_of(r, floors)
        if s.steps != "async" or s.store != "sqlite-normal" or value is None:
            continue
        goal = 0.8 if s.concurrency == 1 else 1.5
        verdict = "PASS" if value >= goal else "MISS"
        lines.append(
            f"target: sagakit >= {goal}x the hand-written floor on {s.key} "
            f"({s.path}, {s.concurrency} in flight: {value:.2f}x): {verdict}"
        )
    return lines


def ceilings(results: list[Result], floors: Floors) -> list[str]:
    """What the in-memory rows say of the durable ones: the same one thread
    runs the engine whatever the store, and a store only adds work to it, so
    sagakit on SQLite NORMAL stays below sagakit in memory with as many in
    flight; and what group commit buys where a commit costs an fsync."""
    by_key = {r.scenario.key: r for r in results}
    lines = []
    for durable, memory in (
        ("c-async", "b-async"),
        ("f-sqlite-async", "f-memory-async"),
        ("e-async", "h-async"),
        ("g-async", "i-async"),
    ):
        if durable not in by_key or memory not in by_key:
            continue
        s, cpu = by_key[durable].scenario, by_key[memory].cpu_us_per_saga
        floor = floors.get((s.store, s.concurrency, s.path))
        if floor is None or not cpu:
            continue
        # one thread: sagas/s <= 1 / CPU per saga, and a store only adds CPU
        top = 1e6 / cpu / floor.sagas_per_s
        goal = 0.8 if s.concurrency == 1 else 1.5
        lines.append(
            f"ceiling: {durable} <= 1 / the CPU per saga of {memory} (no store at "
            f"all: {cpu:,.1f} us) = {top:.2f}x the floor, so the {goal}x target "
            f"is {_reach(top, goal)} in this run"
        )
        writes = by_key.get(
            f"floor-writes-seq-{'ok' if s.path == 'success' else 'fail'}"
        )
        if s.concurrency == 1 and writes is not None and writes.cpu_us_per_saga:
            # as many commits as the floor, with a superset of its rows
            both = cpu + writes.cpu_us_per_saga
            top = 1e6 / both / floor.sagas_per_s
            lines.append(
                f"ceiling: {durable} <= about 1 / ({memory}'s {cpu:,.1f} us + "
                f"the floor's writes alone, {writes.cpu_us_per_saga:,.1f} us: as "
                f"many commits, a subset of the rows) = {top:.2f}x the floor, so "
                f"the {goal}x target is {_reach(top, goal)} in this run"
            )
    for row in ("d-async", "j-async"):
        value = floor_of(by_key[row], floors) if row in by_key else None
        if value is not None:
            s = by_key[row].scenario
            lines.append(
                f"group commit where a commit costs an fsync: {row} (SQLite FULL, "
                f"{s.concurrency} in flight) is {value:.2f}x the FULL floor"
            )
    return lines


def _reach(top: float, goal: float) -> str:
    return "within reach" if top >= goal else "out of reach"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load_at_start = load_average()
    with tempfile.TemporaryDirectory(prefix="sagakit-bench-", dir=args.dir) as tmp:
        db_dir = Path(tmp)
        saga_py_version = None
        if saga_py is None:
            print(
                "note: saga-py is not importable (pip install -e '.[bench]'); "
                "measuring sagakit only, ratios are n/a"
            )
        else:
            saga_py_version = importlib.metadata.version("saga-py")
        print(
            f"sagakit benchmark: {STEPS}-step saga, each step with a compensation; "
            f"median of {args.repeats} run(s) after a warm-up"
        )
        print(
            f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
            f"{os.cpu_count()} CPUs, saga-py {saga_py_version or 'missing'}, "
            f"db dir {db_dir} ({filesystem(db_dir)})"
        )
        print()
        results = []
        for s in scenarios(args.n, args.concurrency):
            if s.library == "saga-py" and saga_py is None:
                continue
            results.append(run_scenario(s, args.repeats, db_dir))
        baselines = {
            r.scenario.path: r for r in results if r.scenario.library == "saga-py"
        }
        floors = {
            (r.scenario.store, r.scenario.concurrency, r.scenario.path): r
            for r in results
            if r.scenario.library == "floor"
        }
        for line in table(results, baselines, floors):
            print(line)
        print()
        overhead = to_thread_cost(results)
        round_trip = asyncio.run(_to_thread_round_trip(max(100, args.n)))
        if overhead is not None:
            print(
                f"sync steps (asyncio.to_thread) cost {overhead:,.1f} us more per "
                f"step call than async steps (b-sync vs b-async); a bare "
                f"to_thread round trip takes {round_trip:,.1f} us"
            )
        target_line, rates = target_check(results)
        elapsed = time.perf_counter() - started
        load = load_average()
        print(
            f"total time {elapsed:,.1f} s; load average {load_at_start} at the "
            f"start, {load} at the end (other work on the machine skews the numbers)"
        )
        print(target_line)
        for line in floor_targets(results, floors) + ceilings(results, floors):
            print(line)
    if args.json is not None:
        report = {
            "meta": {
                "python": platform.python_version(),
                "sqlite": sqlite3.sqlite_version,
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "saga_py": saga_py_version,
                "n": args.n,
                "repeats": args.repeats,
                "concurrency": args.concurrency,
                "seconds": elapsed,
                "load_average": {"start": load_at_start, "end": load},
            },
            "results": [
                {
                    **asdict(r.scenario),
                    "sagas_per_s": r.sagas_per_s,
                    "runs": r.runs,
                    "commits_per_saga": r.commits_per_saga,
                    "cpu_us_per_saga": r.cpu_us_per_saga,
                    "ratio_vs_saga_py": ratio(r, baselines.get(r.scenario.path)),
                    "ratio_vs_floor": floor_of(r, floors),
                }
                for r in results
            ],
            "to_thread_us_per_step": overhead,
            "to_thread_round_trip_us": round_trip,
            "target": {
                "sagas_per_s": TARGET,
                "measured": rates,
                "pass": bool(rates) and min(rates.values()) >= TARGET,
            },
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
