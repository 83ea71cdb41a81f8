"""The hand-written floor: the benchmark's 3-step saga with no framework.

Each saga keeps one row (status, position, a small JSON state) and appends a
history line per transition, committing every transition on its own as a
durable saga must: 4 commits per successful saga (start, then one per step)
and 6 per compensated one (start, steps 1 and 2, the failure of step 3, then
one per compensation), the same counts sagakit has without group commit.
Each write is one statement (a CTE updates the row and appends the line), so
one round trip, on the driver sagakit uses: asyncpg with a pool for
PostgreSQL, asyncmy with a pool for MySQL (the statements of a transition in
one multi-statement round trip), the standard ``sqlite3`` module (WAL,
``synchronous=NORMAL``) for SQLite. Sagas in flight are gathered in batches,
as in sagakit's rows.

The floor is what a careful hand-written saga costs per saga; sagakit/floor
above 1 means the framework beats it (by sharing commits between sagas).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, Protocol

PG_SCHEMA = """
DROP TABLE IF EXISTS floor_history;
DROP TABLE IF EXISTS floor_saga;
CREATE TABLE floor_saga (
    id text PRIMARY KEY, status text NOT NULL, position integer NOT NULL,
    state jsonb NOT NULL, updated_at double precision NOT NULL
);
CREATE TABLE floor_history (
    id bigserial PRIMARY KEY, saga_id text NOT NULL REFERENCES floor_saga,
    step text NOT NULL, outcome text NOT NULL, at double precision NOT NULL
);
"""
PG_START = """
WITH s AS (
    INSERT INTO floor_saga (id, status, position, state, updated_at)
    VALUES ($1, 'running', 0, $2::jsonb, $3) RETURNING id
)
INSERT INTO floor_history (saga_id, step, outcome, at)
SELECT id, 'saga', 'started', $3 FROM s
"""
PG_MOVE = """
WITH s AS (
    UPDATE floor_saga SET status = $2, position = $3, state = $4::jsonb,
           updated_at = $5
     WHERE id = $1 AND position = $3 - 1 RETURNING id
)
INSERT INTO floor_history (saga_id, step, outcome, at)
SELECT id, $6, $7, $5 FROM s
"""
SQLITE_SCHEMA = """
DROP TABLE IF EXISTS floor_history;
DROP TABLE IF EXISTS floor_saga;
CREATE TABLE floor_saga (
    id text PRIMARY KEY, status text NOT NULL, position integer NOT NULL,
    state text NOT NULL, updated_at real NOT NULL
);
CREATE TABLE floor_history (
    id integer PRIMARY KEY, saga_id text NOT NULL REFERENCES floor_saga,
    step text NOT NULL, outcome text NOT NULL, at real NOT NULL
);
"""
MYSQL_SCHEMA = """
DROP TABLE IF EXISTS floor_history;
DROP TABLE IF EXISTS floor_saga;
CREATE TABLE floor_saga (
    id VARCHAR(64) PRIMARY KEY, status VARCHAR(32) NOT NULL,
    position INT NOT NULL, state JSON NOT NULL, updated_at DOUBLE NOT NULL
) ENGINE = InnoDB;
CREATE TABLE floor_history (
    id BIGINT AUTO_INCREMENT PRIMARY KEY, saga_id VARCHAR(64) NOT NULL,
    step VARCHAR(64) NOT NULL, outcome VARCHAR(32) NOT NULL, at DOUBLE NOT NULL,
    FOREIGN KEY (saga_id) REFERENCES floor_saga (id)
) ENGINE = InnoDB;
"""
# One round trip per transition, as sagakit's MySQL store does it: the
# statements of a transaction go together (multi-statements)
MYSQL_START = """
START TRANSACTION;
INSERT INTO floor_saga (id, status, position, state, updated_at)
VALUES (%s, 'running', 0, %s, %s);
INSERT INTO floor_history (saga_id, step, outcome, at)
VALUES (%s, 'saga', 'started', %s);
COMMIT
"""
MYSQL_MOVE = """
START TRANSACTION;
UPDATE floor_saga SET status = %s, position = %s, state = %s, updated_at = %s
 WHERE id = %s AND position = %s;
INSERT INTO floor_history (saga_id, step, outcome, at)
SELECT %s, %s, %s, %s FROM DUAL WHERE ROW_COUNT() = 1;
COMMIT
"""
STEPS = ("one", "two", "three")

Write = Callable[[str, tuple[Any, ...]], Awaitable[None]]


class Meter(Protocol):
    """Something measured around each timed run only (the database server's
    CPU time, say): started before the run, stopped after it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def step() -> None:
    return None


async def failing_step() -> None:
    _step_three_failed()


def _step_three_failed() -> NoReturn:
    raise RuntimeError("step 3 failed")


async def saga(write: Write, *, failing: bool, steps: bool = True) -> str:
    """One saga: every transition committed before the next step runs.
    ``steps=False`` makes the same writes without awaiting any step (step 3
    still fails when ``failing``): what the commits and statements cost."""
    saga_id = uuid.uuid4().hex
    done: list[str] = []
    position = 0

    async def move(status: str, step_name: str, outcome: str) -> None:
        nonlocal position
        position += 1
        state = json.dumps({"completed": done, "status": status})
        await write(
            "move", (saga_id, status, position, state, time.time(), step_name, outcome)
        )

    await write("start", (saga_id, json.dumps({"completed": []}), time.time()))
    for i, name in enumerate(STEPS):
        fails = failing and i == len(STEPS) - 1
        try:
            if steps:
                await (failing_step() if fails else step())
            elif fails:
                _step_three_failed()
        except RuntimeError:
            await move("compensating", name, "failed")
            for undone in reversed(list(done)):
                if steps:
                    await step()  # the compensation
                done.remove(undone)
                last = not done
                await move("compensated" if last else "compensating", undone, "undone")
            return "compensated"
        done.append(name)
        last = i == len(STEPS) - 1
        await move("succeeded" if last else "running", name, "succeeded")
    return "succeeded"


async def run(
    write: Write, count: int, concurrency: int, *, failing: bool, steps: bool = True
) -> float:
    """Seconds to run ``count`` sagas, ``concurrency`` at a time."""
    expected = "compensated" if failing else "succeeded"
    loop = asyncio.get_running_loop()
    start = loop.time()
    for first in range(0, count, concurrency):
        batch = min(concurrency, count - first)
        ended = await asyncio.gather(
            *(saga(write, failing=failing, steps=steps) for _ in range(batch))
        )
        if any(e != expected for e in ended):
            raise RuntimeError(f"a floor saga did not end {expected}")
    return loop.time() - start


async def measure(
    floor: PostgresFloor | MySQLFloor | SQLiteFloor,
    n: int,
    repeats: int,
    concurrency: int,
    *,
    failing: bool,
    meter: Meter | None = None,
    steps: bool = True,
) -> tuple[list[float], float, float]:
    """Sagas/s of ``repeats`` timed runs after a warm-up (``n // 10``), the
    commits per saga they made and this process's CPU microseconds per saga
    (``time.process_time``: the database server's are not in it, ``meter``
    can take them); closes ``floor``."""
    try:
        warm_up = max(1, n // 10)
        await run(floor.write, warm_up, concurrency, failing=failing, steps=steps)
        runs: list[float] = []
        commits = floor.commits
        cpu = 0.0
        for _ in range(repeats):
            gc.collect()
            if meter is not None:
                await meter.start()
            cpu -= time.process_time()
            took = await run(floor.write, n, concurrency, failing=failing, steps=steps)
            runs.append(n / took)
            cpu += time.process_time()
            if meter is not None:
                await meter.stop()
        done = n * repeats
        return runs, (floor.commits - commits) / done, cpu / done * 1e6
    finally:
        await floor.close()


class PostgresFloor:
    """The floor on PostgreSQL: an asyncpg pool, a statement per transition."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.commits = 0

    @classmethod
    async def open(cls, url: str, pool_size: int) -> PostgresFloor:
        import asyncpg  # noqa: PLC0415 - only PostgreSQL runs need it

        pool = await asyncpg.create_pool(url, min_size=pool_size, max_size=pool_size)
        await pool.execute(PG_SCHEMA)
        return cls(pool)

    async def write(self, what: str, args: tuple[Any, ...]) -> None:
        await self.pool.execute(PG_START if what == "start" else PG_MOVE, *args)
        self.commits += 1

    async def close(self) -> None:
        await self.pool.close()


class MySQLFloor:
    """The floor on MySQL/MariaDB: an asyncmy pool, a round trip (and a
    commit) per transition."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.commits = 0

    @classmethod
    async def open(cls, url: str, pool_size: int) -> MySQLFloor:
        import asyncmy  # noqa: PLC0415 - only MySQL runs need it
        from asyncmy.constants import CLIENT  # noqa: PLC0415

        from sagakit.adapters.store.mysql_database import options  # noqa: PLC0415

        pool = await asyncmy.create_pool(
            minsize=pool_size,
            maxsize=pool_size,
            **options(url),
            autocommit=True,
            client_flag=CLIENT.MULTI_STATEMENTS,
        )
        floor = cls(pool)
        await floor._run(MYSQL_SCHEMA, ())
        return floor

    async def _run(self, script: str, args: tuple[Any, ...]) -> None:
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(script, args)
            while await cur.nextset():
                pass

    async def write(self, what: str, args: tuple[Any, ...]) -> None:
        if what == "start":
            saga_id, state, at = args
            await self._run(MYSQL_START, (saga_id, state, at, saga_id, at))
        else:
            saga_id, status, position, state, at, step_name, outcome = args
            await self._run(
                MYSQL_MOVE,
                (
                    *(status, position, state, at, saga_id, position - 1),
                    *(saga_id, step_name, outcome, at),
                ),
            )
        self.commits += 1

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()


class SQLiteFloor:
    """The floor on SQLite: one connection, a transaction per transition;
    ``synchronous`` "normal" (survives a killed process) or "full" (an fsync
    per commit: survives a power cut too)."""

    def __init__(self, path: str, synchronous: str = "normal") -> None:
        if synchronous not in ("normal", "full"):
            raise ValueError(f"synchronous: normal or full, not {synchronous!r}")
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self.conn.executescript(SQLITE_SCHEMA)
        self.commits = 0

    async def write(self, what: str, args: tuple[Any, ...]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        if what == "start":
            saga_id, state, at = args
            conn.execute(
                "INSERT INTO floor_saga VALUES (?, 'running', 0, ?, ?)",
                (saga_id, state, at),
            )
            conn.execute(
                "INSERT INTO floor_history (saga_id, step, outcome, at) "
                "VALUES (?, 'saga', 'started', ?)",
                (saga_id, at),
            )
        else:
            saga_id, status, position, state, at, step_name, outcome = args
            conn.execute(
                "UPDATE floor_saga SET status = ?, position = ?, state = ?, "
                "updated_at = ? WHERE id = ? AND position = ?",
                (status, position, state, at, saga_id, position - 1),
            )
            conn.execute(
                "INSERT INTO floor_history (saga_id, step, outcome, at) "
                "VALUES (?, ?, ?, ?)",
                (saga_id, step_name, outcome, at),
            )
        conn.execute("COMMIT")
        self.commits += 1

    async def close(self) -> None:
        self.conn.close()


def parse_checked(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    sizes: Sequence[str] = ("n", "repeats", "concurrency"),
) -> argparse.Namespace:
    """``parser``'s arguments from ``argv``, each of ``sizes`` at least 1 and
    ``--db-prefix`` letters, digits and underscores (a database name is
    made of it); else exit 2 saying which (the scripts' shared checks)."""
    args = parser.parse_args(argv)
    for name in sizes:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if not args.db_prefix.replace("_", "").isalnum():
        parser.error("--db-prefix takes letters, digits and underscores")
    return args
