"""asyncmy against aiomysql on this machine's MySQL/MariaDB: why the store
uses asyncmy.

Two workloads, each on one connection of each driver, interleaved round by
round so that both see the same machine:

round-trip   INSERT a row (autocommit), then SELECT it back by primary key
transaction  BEGIN; INSERT; UPDATE ... WHERE version = ?; SELECT; COMMIT

Each row prints the median of ``--rounds`` timed rounds of ``--n`` operations:
operations/s, the CPU time of this process per operation (what the driver
costs the client; the server's part is the same for both), and asyncmy over
aiomysql. The statements are the same text for both drivers (``%s``
parameters). Numbers are printed, never asserted.

    python benchmarks/mysql_drivers.py [--n 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomysql
import asyncmy

DEFAULT_URL = "mysql://root@127.0.0.1:3306/test"
URL_ENV = "SAGAKIT_TEST_MYSQL_URL"
DRIVERS = ("asyncmy", "aiomysql")
WORKLOADS = ("round-trip", "transaction")

INSERT = "INSERT INTO {t} (id, version, body) VALUES (%s, 1, %s)"
SELECT = "SELECT id, version, body FROM {t} WHERE id = %s"
UPDATE = "UPDATE {t} SET version = version + 1, body = %s WHERE id = %s AND version = 1"


@dataclass
class Row:
    driver: str
    workload: str
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def options(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "db": unquote(parts.path.lstrip("/")) or "test",
        "autocommit": True,
    }


async def connect(driver: str, url: str) -> Any:
    if driver == "asyncmy":
        return await asyncmy.connect(**options(url))
    return await aiomysql.connect(**options(url))


Op = Callable[[Any, str, int], Awaitable[None]]


async def round_trip(conn: Any, table: str, n: int) -> None:
    key = f"{uuid.uuid4().hex}-{n}"
    async with conn.cursor() as cur:
        await cur.execute(INSERT.format(t=table), (key, '{"step": 1}'))
        await cur.execute(SELECT.format(t=table), (key,))
        if (await cur.fetchone())[0] != key:
            raise RuntimeError("the row did not come back")


async def transaction(conn: Any, table: str, n: int) -> None:
    key = f"{uuid.uuid4().hex}-{n}"
    async with conn.cursor() as cur:
        await cur.execute("BEGIN")
        await cur.execute(INSERT.format(t=table), (key, '{"step": 1}'))
        await cur.execute(UPDATE.format(t=table), ('{"step": 2}', key))
        if cur.rowcount != 1:
            raise RuntimeError("the update missed")
        await cur.execute(SELECT.format(t=table), (key,))
        await cur.fetchone()
        await cur.execute("COMMIT")


async def timed(conn: Any, table: str, op: Op, n: int) -> tuple[float, float]:
    """Operations/s and CPU microseconds per operation of ``n`` calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        await op(conn, table, i)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu / n * 1e6


async def main_async(args: argparse.Namespace) -> list[Row]:
    table = f"bench_drivers_{uuid.uuid4().hex[:8]}"
    conns = {d: await connect(d, args.url) for d in DRIVERS}
    ops: dict[str, Op] = {"round-trip": round_trip, "transaction": transaction}
    rows = {(d, w): Row(d, w) for w in WORKLOADS for d in DRIVERS}
    setup = conns["asyncmy"]
    async with setup.cursor() as cur:
        await cur.execute(
            f"CREATE TABLE {table} (id VARCHAR(64) PRIMARY KEY, "
            "version INT NOT NULL, body JSON NOT NULL) ENGINE=InnoDB"
        )
    try:
        for workload in WORKLOADS:
            for driver in DRIVERS:  # warm-up
                await timed(conns[driver], table, ops[workload], args.n // 10 + 1)
            for r in range(args.rounds):
                order = DRIVERS if r % 2 == 0 else DRIVERS[::-1]
                for driver in order:
                    rate, cpu = await timed(conns[driver], table, ops[workload], args.n)
                    rows[driver, workload].rates.append(rate)
                    rows[driver, workload].cpu_us.append(cpu)
    finally:
        async with setup.cursor() as cur:
            await cur.execute(f"DROP TABLE IF EXISTS {table}")
        for conn in conns.values():
            conn.close()
    return list(rows.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="operations per round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds")
    parser.add_argument("--url", default=os.environ.get(URL_ENV) or DEFAULT_URL)
    args = parser.parse_args(argv)
    start_load = load_average()
    versions = ", ".join(f"{d} {importlib.metadata.version(d)}" for d in DRIVERS)
    print(f"{versions}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    print(f"load average at the start: {start_load}")
    rows = asyncio.run(main_async(args))
    print()
    head = ("workload", "driver", "ops/s", "CPU us/op", "asyncmy/aiomysql")
    print(f"{head[0]:<12} {head[1]:<9} {head[2]:>8} {head[3]:>10}  {head[4]}")
    by = {(r.driver, r.workload): r for r in rows}
    for r in rows:
        rate, cpu = statistics.median(r.rates), statistics.median(r.cpu_us)
        ratio = ""
        if r.driver == "asyncmy":
            peer = by["aiomysql", r.workload]
            vs = rate / statistics.median(peer.rates)
            cpu_vs = cpu / statistics.median(peer.cpu_us)
            ratio = f"{vs:.2f}x ops/s, {cpu_vs:.2f}x CPU per op"
        print(f"{r.workload:<12} {r.driver:<9} {rate:>8,.0f} {cpu:>10,.0f}  {ratio}")
    print(f"\nload average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
