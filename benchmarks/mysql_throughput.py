"""The PostgreSQL benchmark's 3-step saga on MySQL/MariaDB next to PostgreSQL,
in the same run, each against its hand-written floor.

Every saga has three trivial ``async def`` steps, each with a compensation
(benchmarks/postgres_throughput.py's saga). For each database:

sk-*      sagakit (``MySQLStore`` / ``PostgresStore``, pool of 20)
floor-*   the same saga hand-written on the same driver (benchmarks/floor.py):
          a commit per transition, one round trip each, no saga library

and for each, four scenarios: ``seq-ok`` (one saga at a time, all steps
succeed), ``seq-fail`` (step 3 raises; steps 2 and 1 are compensated), and
``conc-ok`` / ``conc-fail`` (``--concurrency`` sagas in flight, gathered in
batches, where sagakit's group commit shares commits). Each database gets a
fresh database of its own (``PREFIX_mysql`` / ``PREFIX_pg``), dropped at the
end. Rows are the median of ``--repeats`` timed runs after one warm-up.
Besides sagas/s, each row shows the CPU time of this process per saga (the
machine is shared: CPU per saga moves less than wall time) and commits per
saga; then sagakit/floor on each database and MySQL/PostgreSQL for each
library. Load averages are printed at the start and at the end. Numbers are
printed (and written with ``--json``), never asserted.

    python benchmarks/mysql_throughput.py [--n 300] [--repeats 3] [--json out.json]
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
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sagakit import Orchestrator, SagaStatus
from sagakit.adapters.store import is_mysql
from sagakit.adapters.store.mysql import MySQLStore
from sagakit.adapters.store.postgres import PostgresStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import MySQLFloor, PostgresFloor, parse_checked
from floor import measure as floor_measure
from postgres_throughput import recreate_database, sagakit_saga

DEFAULTS = {
    "mysql": ("SAGAKIT_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
    "pg": ("SAGAKIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
}
POOL_SIZE = 20
DATABASES = ("mysql", "pg")
LIBRARIES = ("sk", "floor")
PAIRS = ("seq-ok", "seq-fail", "conc-ok", "conc-fail")


@dataclass(frozen=True)
class Row:
    database: str
    library: str
    pair: str
    n: int
    runs: list[float]  # sagas/s of each timed run
    cpu_ms: float  # CPU time of this process per saga, median run
    commits_per_saga: float

    @property
    def key(self) -> str:
        return f"{self.database}-{self.library}-{self.pair}"

    @property
    def rate(self) -> float:
        return statistics.median(self.runs)


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def database_url(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def mysql_recreate(url: str, name: str, *, create: bool = True) -> None:
    import asyncmy  # noqa: PLC0415

    from sagakit.adapters.store.mysql_database import options  # noqa: PLC0415

    conn = await asyncmy.connect(**options(url), autocommit=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            if create:
                await cur.execute(f"CREATE DATABASE `{name}`")
    finally:
        conn.close()


async def run_sagakit(url: str, pair: str, n: int, repeats: int, conc: int) -> Row:
    failing = pair.endswith("fail")
    in_flight = conc if pair.startswith("conc") else 1
    saga = sagakit_saga(failing=failing)
    expected = SagaStatus.COMPENSATED if failing else SagaStatus.SUCCEEDED
    kind: Any = MySQLStore if is_mysql(url) else PostgresStore
    store = await kind.connect(url, max_size=POOL_SIZE)  # as large as the floor's
    orchestrator = Orchestrator(store, [saga])

    async def timed(count: int) -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        for first in range(0, count, in_flight):
            batch = min(in_flight, count - first)
            results = await asyncio.gather(
                *(orchestrator.run(saga) for _ in range(batch))
            )
            if any(r.status is not expected for r in results):
                raise RuntimeError("a saga ended in the wrong status")
        return time.perf_counter() - wall, time.process_time() - cpu

    try:
        await timed(max(1, n // 10))
        runs, cpus = [], []
        commits = store.commits
        for _ in range(repeats):
            gc.collect()
            wall, cpu = await timed(n)
            runs.append(n / wall)
            cpus.append(cpu * 1000 / n)
        per_saga = (store.commits - commits) / (n * repeats)
    finally:
        await orchestrator.close()
    return Row("", "sk", pair, n, runs, statistics.median(cpus), per_saga)


async def run_floor(url: str, pair: str, n: int, repeats: int, conc: int) -> Row:
    opener = MySQLFloor if is_mysql(url) else PostgresFloor
    floor = await opener.open(url, POOL_SIZE)
    in_flight = conc if pair.startswith("conc") else 1
    runs, commits, cpu_us = await floor_measure(
        floor, n, repeats, in_flight, failing=pair.endswith("fail")
    )
    return Row("", "floor", pair, n, runs, cpu_us / 1000, commits)


def table(rows: list[Row]) -> list[str]:
    by = {r.key: r for r in rows}
    header = (
        "scenario",
        "n",
        "sagas/s",
        "runs min-max",
        "CPU ms/saga",
        "commits/saga",
        "sagakit/floor",
        "mysql/pg",
    )
    lines = [header]
    for r in rows:
        floor = by.get(f"{r.database}-floor-{r.pair}")
        other = by.get(
            f"{'pg' if r.database == 'mysql' else 'mysql'}-{r.library}-{r.pair}"
        )
        to_floor = f"{r.rate / floor.rate:.2f}x" if r.library == "sk" and floor else "-"
        vs = f"{r.rate / other.rate:.2f}x" if r.database == "mysql" and other else "-"
        lines.append(
            (
                r.key,
                str(r.n),
                f"{r.rate:,.0f}",
                f"{min(r.runs):,.0f}-{max(r.runs):,.0f}",
                f"{r.cpu_ms:.2f}",
                f"{r.commits_per_saga:.2f}",
                to_floor,
                vs,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    out.insert(1, "-" * len(out[0]))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="sagas per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row")
    parser.add_argument("--concurrency", type=int, default=50)
    for db, (env, default) in DEFAULTS.items():
        parser.add_argument(
            f"--{db}-url",
            default=os.environ.get(env) or default,
            help=f"a database on the server (default ${env} or {default})",
        )
    parser.add_argument("--db-prefix", default="bench_mysql")
    parser.add_argument(
        "--only",
        choices=DATABASES,
        help="measure one database (no mysql/pg ratio then)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parse_checked(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_start = time.perf_counter(), load_average()
    print(
        "3-step saga on MySQL next to PostgreSQL, sagakit and the hand-written "
        f"floor; median of {args.repeats} run(s) after a warm-up"
    )
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"load average at the start: {load_start}"
    )
    chosen = [args.only] if args.only else list(DATABASES)
    urls = {
        db: database_url(getattr(args, f"{db}_url"), f"{args.db_prefix}_{db}")
        for db in chosen
    }
    rows: list[Row] = []
    try:
        for db in chosen:
            base, name = getattr(args, f"{db}_url"), f"{args.db_prefix}_{db}"
            if db == "mysql":
                asyncio.run(mysql_recreate(base, name))
            else:
                asyncio.run(recreate_database(base, name))
        for pair in PAIRS:
            for db in chosen:
                sk = asyncio.run(
                    run_sagakit(urls[db], pair, args.n, args.repeats, args.concurrency)
                )
                floor = asyncio.run(
                    run_floor(urls[db], pair, args.n, args.repeats, args.concurrency)
                )
                rows += [
                    Row(
                        db, r.library, r.pair, r.n, r.runs, r.cpu_ms, r.commits_per_saga
                    )
                    for r in (sk, floor)
                ]
    finally:
        for db in chosen:
            base, name = getattr(args, f"{db}_url"), f"{args.db_prefix}_{db}"
            if db == "mysql":
                asyncio.run(mysql_recreate(base, name, create=False))
            else:
                asyncio.run(recreate_database(base, name, create=False))
    rows.sort(key=lambda r: (DATABASES.index(r.database), LIBRARIES.index(r.library)))
    print()
    for line in table(rows):
        print(line)
    load_end = load_average()
    print(
        f"\ntotal {time.perf_counter() - started:,.1f} s; load average at the end: "
        f"{load_end} (other work on the machine skews the numbers)"
    )
    if args.json is not None:
        report = {
            "meta": {
                "n": args.n,
                "repeats": args.repeats,
                "concurrency": args.concurrency,
                "load_average": {"start": load_start, "end": load_end},
            },
            "rows": [{**asdict(r), "key": r.key, "sagas_per_s": r.rate} for r in rows],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
