"""The workflow benchmark's steps and its hand-written floors
(``workflow_throughput.py``): the driver alone, a transaction per instance
created and per step (a guarded UPDATE of the instance row and a history
INSERT), each committed before the next step runs; the same tables and
statements on ``sqlite3`` (WAL, ``synchronous=NORMAL``) and on asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

STEPS = ("one", "two", "three")
FLOOR_SCHEMA = """
CREATE TABLE instance (
    id text PRIMARY KEY, step text, state text NOT NULL,
    version integer NOT NULL, status text NOT NULL
);
CREATE TABLE history (
    id {serial} PRIMARY KEY, instance_id text NOT NULL REFERENCES instance,
    step text NOT NULL, outcome text NOT NULL, detail text,
    at double precision NOT NULL
);
"""  # {serial}: how each dialect numbers the history lines
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


def changed_no_row(args: tuple[Any, ...]) -> NoReturn:
    raise RuntimeError(f"floor: {args} changed no row")


class Floor:
    """The hand-written floor: a transaction per create and per step (the
    step's guarded by the instance's version), each committed before the
    next step runs; a subclass commits them with its driver."""

    def __init__(self) -> None:
        self.steps = {s.__name__: s for s in chain(lambda name, i: (name, i), None)}
        self.commits = self.made = 0

    def connection(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A connection for an instance in flight, or for all one at a time."""
        raise NotImplementedError

    async def commit(
        self, conn: Any, sql: str, args: tuple[Any, ...], line: tuple[Any, ...]
    ) -> None:
        """``sql`` (changing one row) and a history line, in one transaction
        on ``conn``, counted in ``commits``."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def create(self, conn: Any, i: int) -> str:
        self.made += 1
        iid, state = str(self.made), json.dumps({"input": i})
        line = (iid, STEPS[0], "started", state)
        await self.commit(conn, CREATE, (iid, STEPS[0], state), line)
        return iid

    async def run(self, conn: Any, iid: str, i: int) -> None:
        step: str | None = STEPS[0]
        value: Any = i
        version = 1
        while step is not None:
            out = await self.steps[step](value)
            after, value = out if isinstance(out, tuple) else (None, out)
            state = json.dumps({"input" if after else "result": value})
            status = "pending" if after else "succeeded"
            detail = json.dumps({"next": after})
            await self.commit(
                conn,
                MOVE,
                (after, state, version + 1, status, iid, version),
                (iid, step, "succeeded", detail),
            )
            step, version = after, version + 1


class SQLiteFloor(Floor):
    """The floor on one ``sqlite3`` connection (``BEGIN IMMEDIATE``)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
            + FLOOR_SCHEMA.format(serial="integer")
        )

    def connection(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return contextlib.nullcontext(self.conn)

    async def commit(
        self, conn: Any, sql: str, args: tuple[Any, ...], line: tuple[Any, ...]
    ) -> None:
        conn.execute("BEGIN IMMEDIATE")
        if conn.execute(sql, args).rowcount != 1:
            conn.execute("ROLLBACK")
            changed_no_row(args)
        conn.execute(HISTORY, (*line, time.time()))
        conn.execute("COMMIT")
        self.commits += 1

    async def close(self) -> None:
        self.conn.close()


def numbered(sql: str) -> str:
    """``sql`` with asyncpg's ``$1``, ``$2``... for its ``?``s."""
    parts = sql.split("?")
    return "".join(f"{p}${k}" for k, p in enumerate(parts[:-1], 1)) + parts[-1]


async def keep_session(conn: Any) -> None:
    """Pool reset hook: none (no reset query on each release, as sagakit's)."""


class AsyncpgFloor(Floor):
    """The floor on asyncpg: a pool of one connection per instance in flight
    (as ``floor.PostgresFloor``), ``BEGIN`` ... ``COMMIT`` per transaction."""

    def __init__(self, pool: Any) -> None:
        super().__init__()
        self.pool = pool
        self.sql = {q: numbered(q) for q in (CREATE, MOVE, HISTORY)}

    @classmethod
    async def open(cls, url: str, size: int) -> AsyncpgFloor:
        import asyncpg  # noqa: PLC0415 - only PostgreSQL runs need it

        pool = await asyncpg.create_pool(
            url, min_size=size, max_size=size, reset=keep_session
        )
        serial = "bigint GENERATED ALWAYS AS IDENTITY"
        await pool.execute(FLOOR_SCHEMA.format(serial=serial))
        return cls(pool)

    def connection(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.pool.acquire()

    async def commit(
        self, conn: Any, sql: str, args: tuple[Any, ...], line: tuple[Any, ...]
    ) -> None:
        async with conn.transaction():  # rolled back if it raises
            if not (await conn.execute(self.sql[sql], *args)).endswith(" 1"):
                changed_no_row(args)
            await conn.execute(self.sql[HISTORY], *line, time.time())
        self.commits += 1

    async def close(self) -> None:
        await self.pool.close()
