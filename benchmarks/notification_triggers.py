"""What the notification triggers of migration 0016 cost a save.

Every save of a saga updates its status column, so the triggers' WHEN
clause is checked on each one; only an ending in ``failed`` or
``compensation_failed`` inserts a notification. Rows:

- ``save``: a save that keeps the saga running (the hot path: each step's
  transition), with the triggers (``sagakit``) and without them (``floor``:
  the same store, triggers dropped on SQLite, disabled on PostgreSQL);
- ``end``: a save that ends the saga ``failed`` (the trigger writes a
  notification row), with and without.

The two sides take turns in the same process, several rounds, so a load
that comes and goes hits both alike; each figure is the median over rounds.
Numbers are printed (and written with ``--json``), never asserted.

    python benchmarks/notification_triggers.py [--n 2000] [--rounds 5] [--dsn URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sagakit import SagaStatus, SQLiteStore
from sagakit.ports.store import SagaStore
from sagakit.testing.contracts.records import make_record

TRIGGERS = ("sagakit_saga_notify_insert", "sagakit_saga_notify_end")
DSN_ENV = "SAGAKIT_BENCH_POSTGRES"


class Switch:
    """Turns the notification triggers of one store's database off and on."""

    def __init__(self, store: Any, postgres: bool) -> None:
        self.store, self.postgres = store, postgres
        self.saved: list[str] = []

    async def set(self, on: bool) -> None:
        if self.postgres:
            verb = "ENABLE" if on else "DISABLE"
            async with self.store.database.transaction("triggers") as conn:
                for name in TRIGGERS:
                    await conn.execute(
                        f"ALTER TABLE sagakit_saga {verb} TRIGGER {name}"
                    )
            return
        conn = self.store.database.conn
        if on:
            for sql in self.saved:
                conn.execute(sql)
            self.saved = []
            return
        found = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            " AND name IN (?, ?)",
            TRIGGERS,
        ).fetchall()
        for name, sql in found:
            self.saved.append(sql)
            conn.execute(f"DROP TRIGGER {name}")


async def saves(
    store: SagaStore, prefix: str, n: int, ending: bool
) -> tuple[float, float]:
    """Saves per CPU second of this process, and per wall-clock second:
    ``n`` sagas created, then each saved once (running again, or ended
    failed); only the saves are timed. CPU time moves with this process's
    work only, on a machine shared with other work; on PostgreSQL it leaves
    out the server's part, which the triggers run in: read the wall clock."""
    records = [make_record(f"{prefix}-{i}", created=float(i)) for i in range(n)]
    for record in records:
        await store.create(record, [])
    status = SagaStatus.FAILED if ending else SagaStatus.RUNNING
    moved = [
        replace(r, version=2, status=status, state=replace(r.state, status=status))
        for r in records
    ]
    cpu, wall = time.process_time(), time.perf_counter()
    for record in moved:
        await store.save(record, 1, [])
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)


async def measure(
    store: Any, postgres: bool, n: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Median (CPU, wall) saves per second by row and side."""
    switch = Switch(store, postgres)
    figures: dict[str, list[tuple[float, float]]] = {}
    for round_ in range(rounds):
        sides = [True, False] if round_ % 2 == 0 else [False, True]
        for on in sides:
            await switch.set(on)
            for row, ending in (("save", False), ("end", True)):
                key = f"{row} {'sagakit' if on else 'floor'}"
                per_s = await saves(store, f"r{round_}{on}{row}", n, ending)
                figures.setdefault(key, []).append(per_s)
    await switch.set(True)
    return {
        k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
        for k, v in figures.items()
    }


async def postgres_store(dsn: str) -> Any:
    import asyncpg  # noqa: PLC0415 - only with --dsn

    from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415

    name = "bench_notification_triggers"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return await PostgresStore.connect(dsn.rsplit("/", 1)[0] + f"/{name}")


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[tuple[str, Any, bool]] = [
            ("sqlite", SQLiteStore(Path(tmp) / "bench.db"), False)
        ]
        if args.dsn:
            stores.append(("postgres", await postgres_store(args.dsn), True))
        for label, store, postgres in stores:
            try:
                found = await measure(store, postgres, args.n, args.rounds)
            finally:
                await store.close()
            for row in ("save", "end"):
                ours, floor = found[f"{row} sagakit"], found[f"{row} floor"]
                for i, clock in enumerate(("cpu", "wall")):
                    print(
                        f"{label:<9} {row:<5} {clock:<5} with triggers "
                        f"{ours[i]:>9,.0f}/s   without {floor[i]:>9,.0f}/s   "
                        f"ratio {ours[i] / floor[i]:.2f}x"
                    )
                for library, figure in (("sagakit", ours), ("floor", floor)):
                    key = f"{label}-{row}"
                    results.append({"key": key, "library": library, "per_s": figure[0]})
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="saves per run")
    parser.add_argument("--rounds", type=int, default=5, help="turns per side")
    parser.add_argument("--dsn", default=os.environ.get(DSN_ENV), help="PostgreSQL")
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    rows = asyncio.run(main(options))
    print(f"load average at end:   {os.getloadavg()}")
    if options.json:
        options.json.write_text(json.dumps({"results": rows}, indent=2))
