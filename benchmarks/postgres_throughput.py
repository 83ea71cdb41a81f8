"""Throughput of a 3-step saga on PostgreSQL: sagakit against DBOS.

Every saga has three trivial steps, each with a compensation; each system gets
a fresh database of its own on the same server. Scenarios:

sk-seq-ok     sagakit ``PostgresStore``, one saga at a time, all steps succeed
sk-seq-fail   the same, step 3 raises: steps 2 and 1 are compensated
sk-conc-ok    ``--concurrency`` sagas in flight (``asyncio.gather`` over batches)
sk-conc-fail  the same on the failure path
floor-*       the same four hand-written (benchmarks/floor.py): asyncpg, one
              commit per transition, no framework: the per-saga floor
dbos-*        the same four with DBOS workflows and steps (durable defaults)

sagakit steps are ``async def``. DBOS runs its plain idiom when sequential (a
sync ``@DBOS.workflow()`` called directly, three sync ``@DBOS.step()`` calls)
and, when concurrent, the same workflows started with ``DBOS.start_workflow``,
which runs each on DBOS's thread pool (``--dbos-concurrent async``: ``async
def`` workflows and steps started with ``DBOS.start_workflow_async`` instead;
slightly slower here, since DBOS's async path sends each checkpoint through
``asyncio.to_thread``). Its saga is the try/except idiom: on failure the
workflow runs compensating steps for the steps that completed, in reverse.
DBOS keeps its defaults (every step checkpointed in its system database,
pool of 20 connections); only its log level is raised to WARNING.

Each row is the median of ``--repeats`` timed runs after one warm-up run.
Numbers are printed (and written with ``--json``), never asserted: the exit
status is 0 whatever they are.

    python benchmarks/postgres_throughput.py [--n 1000] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from sagakit import Orchestrator, Saga, SagaStatus, Step
from sagakit.adapters.store.postgres import PostgresStore, describe

# benchmarks/floor.py, also when this script is run from elsewhere (runpy)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import PostgresFloor, parse_checked
from floor import measure as floor_measure

try:
    import dbos
except ImportError:  # the `bench` extra is not installed
    dbos = None

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DSN_ENV = "SAGAKIT_TEST_POSTGRES_URL"
POOL_SIZE = 20  # sagakit's asyncpg pool; DBOS's system database pool is 20 too
STEPS = 3
# DBOS rows run n // DBOS_DIVISOR sagas so that a default run stays around
# three minutes on two cores; each row prints the n it used.
DBOS_DIVISOR = 5
TARGET_SEQUENTIAL = 300.0  # sagakit sagas/s, one at a time, success path
TARGET_CONCURRENT = 700.0  # sagakit sagas/s, --concurrency in flight, success path
TARGET_COMMITS = {"success": 4.0, "failure": 6.0}  # sagakit commits per saga
TARGET_RATIO = 5.0  # sagakit / DBOS on each matching scenario
# sagakit / the hand-written floor (benchmarks/floor.py): one at a time, and
# with --concurrency in flight (where group commit shares commits)
TARGET_FLOOR = {"seq": 0.8, "conc": 1.5}


class Boom(Exception):
    """The failure of step 3 on the failure path."""


# -- results -------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str  # first column of the table; stable, the smoke test reads it
    label: str
    library: str  # "sagakit", "floor" (hand-written, benchmarks/floor.py) or "dbos"
    mode: str  # "seq" (one saga at a time) or "conc" (--concurrency in flight)
    path: str  # "success" or "failure"
    concurrency: int
    n: int

    @property
    def pair(self) -> str:
        """What sagakit and DBOS rows have in common: ``seq-ok`` etc."""
        return self.key.split("-", 1)[1]


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    runs: list[float]  # sagas/s of each timed run
    commits_per_saga: float | None
    statements_per_saga: float | None
    cpu_us_per_saga: float | None = None
    """This process's CPU time (``time.process_time``) per saga over the timed
    runs, in microseconds (the server's is not in it)."""
    server_cpu_us_per_saga: float | None = None
    """The CPU time of the PostgreSQL backends serving the benchmark's
    database per saga over the timed runs, in microseconds (read from
    ``/proc``: None for a server on another machine)."""

    @property
    def sagas_per_s(self) -> float:
        return statistics.median(self.runs)


def scenarios(n: int, concurrency: int, dbos_mode: str) -> list[Scenario]:
    rows = []
    shorts = {"sagakit": "sk", "floor": "floor", "dbos": "dbos"}
    for library, count in (
        ("sagakit", n),
        ("floor", n),
        ("dbos", max(1, n // DBOS_DIVISOR)),
    ):
        short = shorts[library]
        for mode, conc in (("seq", 1), ("conc", concurrency)):
            for path in ("success", "failure"):
                key = f"{short}-{mode}-{'ok' if path == 'success' else 'fail'}"
                if library == "sagakit":
                    how = "sagakit, PostgresStore" + (
                        f", {conc} in flight (gather)" if conc > 1 else ""
                    )
                elif library == "floor":
                    how = "hand-written, asyncpg, a commit per transition" + (
                        f", {conc} in flight" if conc > 1 else ""
                    )
                elif conc == 1:
                    how = "DBOS, sync workflow called directly"
                elif dbos_mode == "async":
                    how = f"DBOS, {conc} in flight (start_workflow_async)"
                else:
                    how = f"DBOS, {conc} in flight (start_workflow, threads)"
                rows.append(Scenario(key, how, library, mode, path, conc, count))
    return rows


# -- databases -------------------------------------------------------------------


def database_url(dsn: str, name: str) -> str:
    """``dsn`` pointing at another database on the same server."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def recreate_database(dsn: str, name: str, *, create: bool = True) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def cpu_of(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (None: not readable);
    ``scale_sagas.py`` reads the server's with it too."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerCPU:
    """CPU seconds of the PostgreSQL backends serving one database (but not
    this meter's own connection), read from ``/proc`` around each timed run:
    ``seconds`` is their sum, or None if a backend's could not be read (a
    server on another machine)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._before: dict[int, float] = {}
        self.seconds: float | None = 0.0

    @classmethod
    async def open(cls, url: str) -> ServerCPU:
        return cls(await asyncpg.connect(url, timeout=10))

    async def _read(self) -> dict[int, float] | None:
        pids = await self._conn.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        found = {pid: cpu_of(pid) for (pid,) in pids}
        if any(seconds is None for seconds in found.values()):
            return None
        return {pid: seconds for pid, seconds in found.items() if seconds is not None}

    async def start(self) -> None:
        self._before = await self._read() or {}

    async def stop(self) -> None:
        after = await self._read()
        if after is None or self.seconds is None:
            self.seconds = None
            return
        self.seconds += sum(t - self._before.get(pid, 0.0) for pid, t in after.items())

    def per_saga_us(self, sagas: int) -> float | None:
        return None if self.seconds is None else self.seconds / sagas * 1e6

    async def close(self) -> None:
        await self._conn.close()


# -- sagakit -------------------------------------------------------------------


async def act(ctx: Any) -> None:
    return None


async def undo(ctx: Any) -> None:
    return None


async def fail(ctx: Any) -> None:
    raise Boom("step 3 failed")


def sagakit_saga(*, failing: bool) -> Saga[Any]:
    return Saga(
        f"bench_pg_{'fail' if failing else 'ok'}",
        [
            Step("one", act, compensate=undo),
            Step("two", act, compensate=undo),
            Step("three", fail if failing else act, compensate=undo),
        ],
    )


def measure_sagakit(s: Scenario, url: str, repeats: int) -> Result:
    """Warm-up and repeats in one event loop, on one store and orchestrator."""
    failing = s.path == "failure"
    saga = sagakit_saga(failing=failing)
    expected = SagaStatus.COMPENSATED if failing else SagaStatus.SUCCEEDED

    async def main() -> Result:
        store = await PostgresStore.connect(url, max_size=POOL_SIZE)
        orchestrator = Orchestrator(store, [saga])
        server = await ServerCPU.open(url)
        loop = asyncio.get_running_loop()

        async def timed(count: int) -> tuple[float, int, int]:
            commits, statements = store.commits, store.statements
            start = loop.time()
            if s.concurrency == 1:
                for _ in range(count):
                    result = await orchestrator.run(saga)
                    if result.status is not expected:
                        raise RuntimeError(f"saga ended {result.status}")
            else:
                for first in range(0, count, s.concurrency):
                    batch = min(s.concurrency, count - first)
                    results = await asyncio.gather(
                        *(orchestrator.run(saga) for _ in range(batch))
                    )
                    if any(r.status is not expected for r in results):
                        raise RuntimeError("a saga ended in the wrong status")
            return (
                loop.time() - start,
                store.commits - commits,
                store.statements - statements,
            )

        try:
            await timed(max(1, s.n // 10))
            runs: list[float] = []
            commits = statements = 0
            cpu = 0.0
            for _ in range(repeats):
                gc.collect()
                await server.start()
                cpu -= time.process_time()
                seconds, c, st = await timed(s.n)
                cpu += time.process_time()
                await server.stop()
                runs.append(s.n / seconds)
                commits += c
                statements += st
            done = s.n * repeats
            return Result(
                s,
                runs,
                commits / done,
                statements / done,
                cpu / done * 1e6,
                server.per_saga_us(done),
            )
        finally:
            await server.close()
            await orchestrator.close()

    return asyncio.run(main())


def measure_floor(s: Scenario, url: str, repeats: int) -> Result:
    """The hand-written floor (benchmarks/floor.py), measured like sagakit."""

    async def main() -> Result:
        floor = await PostgresFloor.open(url, POOL_SIZE)
        server = await ServerCPU.open(url)
        try:
            runs, commits, cpu = await floor_measure(
                floor,
                s.n,
                repeats,
                s.concurrency,
                failing=s.path == "failure",
                meter=server,
            )
        finally:
            await server.close()
        return Result(s, runs, commits, None, cpu, server.per_saga_us(s.n * repeats))

    return asyncio.run(main())


# -- DBOS ----------------------------------------------------------------------


@dataclass(frozen=True)
class DBOSWorkflows:
    ok: Callable[[], str]
    failing: Callable[[], str]
    ok_async: Callable[[], Coroutine[Any, Any, str]]
    failing_async: Callable[[], Coroutine[Any, Any, str]]


def dbos_workflows() -> DBOSWorkflows:
    """Register DBOS steps and workflows (before ``DBOS.launch()``).

    DBOS's saga idiom: a workflow runs its steps in a try block; on failure it
    runs a compensating step for each step that completed, in reverse.
    """
    assert dbos is not None  # noqa: S101 - callers check first
    api = dbos.DBOS

    @api.step()
    def act_step() -> None:
        return None

    @api.step()
    def undo_step() -> None:
        return None

    @api.step()
    def fail_step() -> None:
        raise Boom("step 3 failed")

    @api.workflow()
    def saga_ok() -> str:
        act_step()
        act_step()
        act_step()
        return "succeeded"

    @api.workflow()
    def saga_failing() -> str:
        compensations: list[Callable[[], None]] = []
        try:
            act_step()
            compensations.append(undo_step)
            act_step()
            compensations.append(undo_step)
            fail_step()
            compensations.append(undo_step)
        except Boom:
            for compensate in reversed(compensations):
                compensate()
            return "compensated"
        return "succeeded"

    @api.step()
    async def act_async() -> None:
        return None

    @api.step()
    async def undo_async() -> None:
        return None

    @api.step()
    async def fail_async() -> None:
        raise Boom("step 3 failed")

    @api.workflow()
    async def saga_ok_async() -> str:
        await act_async()
        await act_async()
        await act_async()
        return "succeeded"

    @api.workflow()
    async def saga_failing_async() -> str:
        compensations: list[Callable[[], Awaitable[None]]] = []
        try:
            await act_async()
            compensations.append(undo_async)
            await act_async()
            compensations.append(undo_async)
            await fail_async()
            compensations.append(undo_async)
        except Boom:
            for compensate in reversed(compensations):
                await compensate()
            return "compensated"
        return "succeeded"

    return DBOSWorkflows(saga_ok, saga_failing, saga_ok_async, saga_failing_async)


def dbos_timed(s: Scenario, flows: DBOSWorkflows, mode: str) -> Callable[[int], float]:
    """``n -> seconds`` for one DBOS scenario."""
    assert dbos is not None  # noqa: S101 - callers check first
    api = dbos.DBOS
    failing = s.path == "failure"
    expected = "compensated" if failing else "succeeded"

    def check(outcomes: list[str]) -> None:
        if any(o != expected for o in outcomes):
            raise RuntimeError(f"a DBOS workflow did not end {expected}")

    if s.concurrency == 1:
        workflow = flows.failing if failing else flows.ok

        def sequential(count: int) -> float:
            start = time.perf_counter()
            outcomes = [workflow() for _ in range(count)]
            elapsed = time.perf_counter() - start
            check(outcomes)
            return elapsed

        return sequential

    if mode == "threads":
        workflow = flows.failing if failing else flows.ok

        def threads(count: int) -> float:
            outcomes: list[str] = []
            start = time.perf_counter()
            for first in range(0, count, s.concurrency):
                batch = min(s.concurrency, count - first)
                handles = [api.start_workflow(workflow) for _ in range(batch)]
                outcomes.extend(h.get_result() for h in handles)
            elapsed = time.perf_counter() - start
            check(outcomes)
            return elapsed

        return threads

    workflow_async = flows.failing_async if failing else flows.ok_async

    async def gathered(count: int) -> float:
        outcomes: list[str] = []
        start = time.perf_counter()
        for first in range(0, count, s.concurrency):
            batch = min(s.concurrency, count - first)
            handles = [
                await api.start_workflow_async(workflow_async) for _ in range(batch)
            ]
            outcomes.extend(await asyncio.gather(*(h.get_result() for h in handles)))
        elapsed = time.perf_counter() - start
        check(outcomes)
        return elapsed

    def run_async(count: int) -> float:
        return asyncio.run(gathered(count))

    return run_async


def measure_dbos(
    rows: list[Scenario], url: str, repeats: int, mode: str
) -> tuple[list[Result], str | None]:
    """Launch DBOS once on ``url``, run its rows, shut it down.

    Returns the results and, if DBOS could not run, a note saying why.
    """
    if dbos is None:
        return [], "dbos is not importable (pip install -e '.[bench,postgres]')"
    api = dbos.DBOS
    try:
        flows = dbos_workflows()
        config: dbos.DBOSConfig = {
            "name": "sagakit-bench",
            "system_database_url": url,
            "log_level": "WARNING",  # keeps launch chatter off the table
        }
        api(config=config)
        api.launch()
    except Exception as exc:
        api.destroy()
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return [], f"DBOS failed to launch ({reason})"
    results = []
    try:
        for s in rows:
            timed = dbos_timed(s, flows, mode)
            timed(max(1, s.n // 10))  # warm-up
            runs = []
            cpu = 0.0
            for _ in range(repeats):
                gc.collect()
                cpu -= time.process_time()
                runs.append(s.n / timed(s.n))
                cpu += time.process_time()
            results.append(Result(s, runs, None, None, cpu / (s.n * repeats) * 1e6))
    finally:
        api.destroy()
    return results, None


# -- report --------------------------------------------------------------------


def ratio(result: Result, by_pair: dict[str, Result]) -> float | None:
    """sagakit's rate over the baseline's (DBOS or the floor) on its pair."""
    if result.scenario.library != "sagakit":
        return None
    baseline = by_pair.get(result.scenario.pair)
    if baseline is None:
        return None
    return result.sagas_per_s / baseline.sagas_per_s


def per_commit(result: Result) -> str:
    """Saga transitions per commit (4 per successful saga, 6 per compensated)."""
    if not result.commits_per_saga:
        return "-"
    transitions = TARGET_COMMITS[result.scenario.path]
    return f"{transitions / result.commits_per_saga:.1f}"


def table(
    results: list[Result],
    dbos_by_pair: dict[str, Result],
    floor_by_pair: dict[str, Result],
) -> list[str]:
    header = (
        "scenario",
        "what",
        "path",
        "in flight",
        "n",
        "sagas/s",
        "runs min-max",
        "cpu us/saga",
        "server us/saga",
        "commits/saga",
        "transitions/commit",
        "sagakit/floor",
        "sagakit/DBOS",
    )
    rows = [header]
    for r in results:
        s = r.scenario
        commits = "-" if r.commits_per_saga is None else f"{r.commits_per_saga:.2f}"
        value = ratio(r, dbos_by_pair)
        to_floor = ratio(r, floor_by_pair)
        shown = "-" if s.library != "sagakit" else "n/a"
        rows.append(
            (
                s.key,
                s.label,
                s.path,
                str(s.concurrency),
                str(s.n),
                f"{r.sagas_per_s:,.0f}",
                f"{min(r.runs):,.0f}-{max(r.runs):,.0f}",
                "-" if r.cpu_us_per_saga is None else f"{r.cpu_us_per_saga:,.1f}",
                "-"
                if r.server_cpu_us_per_saga is None
                else f"{r.server_cpu_us_per_saga:,.1f}",
                commits,
                per_commit(r),
                shown if to_floor is None else f"{to_floor:.2f}x",
                shown if value is None else f"{value:.2f}x",
            )
        )
    numeric = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
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


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def targets(
    results: list[Result],
    dbos_by_pair: dict[str, Result],
    floor_by_pair: dict[str, Result],
) -> list[tuple[str, bool | None]]:
    """(line, passed) per target; passed is None when it could not be measured."""
    sk = {r.scenario.pair: r for r in results if r.scenario.library == "sagakit"}
    checks: list[tuple[str, bool | None]] = []
    for pair, r in sk.items():
        goal = TARGET_FLOOR[r.scenario.mode]
        value = ratio(r, floor_by_pair)
        ok = None if value is None else value >= goal
        shown = "floor not measured" if value is None else f"{value:.2f}x"
        checks.append(
            (
                f"target: sagakit >= {goal}x the hand-written floor on {pair} "
                f"({shown}): {verdict(ok)}",
                ok,
            )
        )
    for pair, floor, what in (
        ("seq-ok", TARGET_SEQUENTIAL, "sequential"),
        ("conc-ok", TARGET_CONCURRENT, "concurrent"),
    ):
        r = sk.get(pair)
        rate = None if r is None else r.sagas_per_s
        shown = "n/a" if rate is None else f"{rate:,.0f}"
        ok = None if rate is None else rate >= floor
        checks.append(
            (
                f"target: sagakit {what} >= {floor:.0f} sagas/s "
                f"(sk-{pair}: {shown}): {verdict(ok)}",
                ok,
            )
        )
    for path, limit in TARGET_COMMITS.items():
        measured = {
            f"sk-{r.scenario.pair}": r.commits_per_saga
            for r in sk.values()
            if r.scenario.path == path and r.commits_per_saga is not None
        }
        ok = None if not measured else max(measured.values()) <= limit
        detail = ", ".join(f"{k}: {v:.2f}" for k, v in measured.items()) or "n/a"
        checks.append(
            (
                f"target: <= {limit:.0f} commits per {path} saga "
                f"({detail}): {verdict(ok)}",
                ok,
            )
        )
    for pair, r in sk.items():
        value = ratio(r, dbos_by_pair)
        ok = None if value is None else value >= TARGET_RATIO
        shown = "DBOS not measured" if value is None else f"{value:.2f}x"
        checks.append(
            (
                f"target: sagakit >= {TARGET_RATIO:.0f}x DBOS on {pair} "
                f"({shown}): {verdict(ok)}",
                ok,
            )
        )
    return checks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n",
        type=int,
        default=1000,
        help=f"sagas per timed run (DBOS rows: n // {DBOS_DIVISOR}); default 1000",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per row; default 5"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="sagas in flight in the concurrent rows; default 50",
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get(DSN_ENV) or DEFAULT_DSN,
        help=f"a database on the server to use (default ${DSN_ENV} or {DEFAULT_DSN});"
        " the benchmark databases are created next to it and dropped afterwards",
    )
    parser.add_argument(
        "--db-prefix",
        default="bench",
        help="names of the databases created: PREFIX_sagakit and PREFIX_dbos;"
        " default 'bench' (existing ones are dropped first)",
    )
    parser.add_argument(
        "--dbos-concurrent",
        choices=("threads", "async"),
        default="threads",
        help="how DBOS runs sagas in flight: sync workflows via start_workflow"
        " on its thread pool (default) or async ones via start_workflow_async",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parse_checked(parser, argv)


async def server_info(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return {
            name: str(await conn.fetchval(f"SHOW {name}"))
            for name in ("server_version", "synchronous_commit", "fsync")
        }
    finally:
        await conn.close()


def load_average() -> str:
    """The 1-minute load average, or "n/a" where the OS has none."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    names = {lib: f"{args.db_prefix}_{lib}".lower() for lib in ("sagakit", "dbos")}
    urls = {lib: database_url(args.dsn, name) for lib, name in names.items()}
    server = asyncio.run(server_info(args.dsn))
    dbos_version = None if dbos is None else importlib.metadata.version("dbos")
    load_at_start = load_average()
    print(
        f"sagakit vs DBOS on PostgreSQL: {STEPS}-step saga, each step with a "
        f"compensation; median of {args.repeats} run(s) after a warm-up"
    )
    print(
        f"python {platform.python_version()}, PostgreSQL {server['server_version']} "
        f"at {describe(args.dsn)} (synchronous_commit={server['synchronous_commit']}"
        f", fsync={server['fsync']}), {os.cpu_count()} CPUs, "
        f"asyncpg {importlib.metadata.version('asyncpg')}, "
        f"dbos {dbos_version or 'missing'}; databases {', '.join(names.values())}"
    )
    rows = scenarios(args.n, args.concurrency, args.dbos_concurrent)
    results: list[Result] = []
    note = None
    try:
        for lib in ("sagakit", "dbos"):
            asyncio.run(recreate_database(args.dsn, names[lib]))
        for s in rows:
            if s.library == "sagakit":
                results.append(measure_sagakit(s, urls["sagakit"], args.repeats))
            elif s.library == "floor":
                results.append(measure_floor(s, urls["sagakit"], args.repeats))
        dbos_results, note = measure_dbos(
            [s for s in rows if s.library == "dbos"],
            urls["dbos"],
            args.repeats,
            args.dbos_concurrent,
        )
        results.extend(dbos_results)
    finally:
        for name in names.values():
            try:
                asyncio.run(recreate_database(args.dsn, name, create=False))
            except (OSError, asyncpg.PostgresError) as exc:  # keep the first error
                print(f"note: could not drop database {name}: {exc}")
    if note is not None:
        print(f"note: {note}; measuring sagakit only, ratios are n/a")
    print()
    dbos_by_pair = {r.scenario.pair: r for r in results if r.scenario.library == "dbos"}
    floor_by_pair = {
        r.scenario.pair: r for r in results if r.scenario.library == "floor"
    }
    for line in table(results, dbos_by_pair, floor_by_pair):
        print(line)
    print()
    elapsed = time.perf_counter() - started
    load = load_average()
    print(
        f"total time {elapsed:,.1f} s; load average {load_at_start} at the start, "
        f"{load} at the end (other work on the machine skews the numbers)"
    )
    checks = targets(results, dbos_by_pair, floor_by_pair)
    for line, _ in checks:
        print(line)
    if args.json is not None:
        report = {
            "meta": {
                "python": platform.python_version(),
                "postgres": server,
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "dbos": dbos_version,
                "dbos_note": note,
                "dbos_concurrent": args.dbos_concurrent,
                "n": args.n,
                "repeats": args.repeats,
                "concurrency": args.concurrency,
                "pool_size": POOL_SIZE,
                "seconds": elapsed,
                "load_average": {"start": load_at_start, "end": load},
            },
            "results": [
                {
                    **asdict(r.scenario),
                    "sagas_per_s": r.sagas_per_s,
                    "runs": r.runs,
                    "commits_per_saga": r.commits_per_saga,
                    "statements_per_saga": r.statements_per_saga,
                    "cpu_us_per_saga": r.cpu_us_per_saga,
                    "server_cpu_us_per_saga": r.server_cpu_us_per_saga,
                    "ratio_vs_dbos": ratio(r, dbos_by_pair),
                    "ratio_vs_floor": ratio(r, floor_by_pair),
                }
                for r in results
            ],
            "targets": [{"line": line, "pass": ok} for line, ok in checks],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
