"""A lean connection pool for the PostgreSQL store's one-statement calls.

asyncpg's pool shields every release in a new task, which costs an extra
event-loop turn per statement (about 70 µs here, a quarter of a save). These
calls need no more than "take an idle connection, run one statement, give it
back", which this does without a task: an idle connection is a list pop.
A connection that broke (server restart) is dropped and replaced on demand.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


class Connections:
    def __init__(self, dsn: str, *, max_size: int) -> None:
        self._dsn = dsn
        self._max = max_size
        self._idle: list[asyncpg.Connection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[asyncpg.Connection]] = (
            collections.deque()
        )
        self._closed = False
        self._all: set[asyncpg.Connection] = set()

    async def _connect(self) -> asyncpg.Connection:
        self._refuse_if_closed()
        conn = await connect(self._dsn)
        if self._closed:  # closed while it connected: nobody would close it
            conn.terminate()
            raise _closed()
        self._all.add(conn)
        return conn

    async def dedicated(self) -> asyncpg.Connection:
        """A new connection of the caller's own, outside the pool's count
        (a listener's, say): the caller closes it."""
        self._refuse_if_closed()
        return await connect(self._dsn)

    def _refuse_if_closed(self) -> None:
        # a task that outlives its store (a lock watch of an orchestrator
        # never closed) must not open connections nobody will close
        if self._closed:
            raise _closed()

    async def open(self, count: int) -> None:
        """Connect ``count`` idle connections now (the first call's error,
        say an unreachable server, is raised)."""
        for _ in range(count):
            self._open += 1
            try:
                self._idle.append(await self._connect())
            except BaseException:
                self._open -= 1
                raise

    async def _take(self) -> asyncpg.Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
            self._open -= 1
        if self._open < self._max:
            self._open += 1
            try:
                return await self._connect()
            except BaseException:
                self._open -= 1
                raise
        waiter: asyncio.Future[asyncpg.Connection] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # handed a connection in the turn its caller was cancelled: the
            # connection goes back, or it and its slot would be lost
            if waiter.done() and not waiter.cancelled() and not waiter.exception():
                self._give_back(waiter.result(), broken=False)
            raise

    def _give_back(self, conn: asyncpg.Connection, *, broken: bool) -> None:
        if broken or self._closed or conn.is_closed():
            if not conn.is_closed():
                conn.terminate()
            self._all.discard(conn)
            self._open -= 1
            self._wake_one_to_connect()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _wake_one_to_connect(self) -> None:
        # a slot opened: the first waiter opens its own connection
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                task = asyncio.ensure_future(self._connect_for(waiter))
                task.add_done_callback(lambda t: t.exception())
                return

    async def _connect_for(self, waiter: asyncio.Future[asyncpg.Connection]) -> None:
        self._open += 1
        try:
            conn = await self._connect()
        except BaseException as exc:
            self._open -= 1
            if not waiter.done():
                waiter.set_exception(exc)
            return
        if waiter.done():
            self._give_back(conn, broken=False)
        else:
            waiter.set_result(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await self._take()
        broken = True
        try:
            yield conn
            broken = False
        except (asyncpg.PostgresError, asyncpg.exceptions.DataError):
            broken = conn.is_closed()  # a statement error leaves it usable
            raise
        finally:
            self._give_back(conn, broken=broken)

    async def close(self) -> None:
        """Close idle connections; connections still in use are cut off."""
        self._closed = True
        while self._waiters:  # none will be handed a connection now
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(_closed())
        idle, self._idle = self._idle, []
        for conn in idle:
            self._open -= 1
            self._all.discard(conn)
            await conn.close()
        for conn in list(self._all):
            conn.terminate()
        self._all.clear()


def _closed() -> asyncpg.InterfaceError:
    """What a call on closed connections gets (a driver error: the store
    turns it into a StoreError)."""
    return asyncpg.InterfaceError("the database was closed")


async def connect(dsn: str) -> asyncpg.Connection:
    """``asyncpg.connect``, shielded: a caller cancelled while asyncpg
    connects (a loop being stopped) must not lose the connection it was
    about to get, which would stay open, unreferenced, until the garbage
    collector warns; it is closed when it arrives."""
    connecting = asyncio.ensure_future(asyncpg.connect(dsn))
    try:
        return await asyncio.shield(connecting)
    except asyncio.CancelledError:
        connecting.add_done_callback(_close_late)
        raise


def _close_late(connecting: asyncio.Future[asyncpg.Connection]) -> None:
    """Close a connection that arrived after its caller gave up."""
    if connecting.cancelled() or connecting.exception() is not None:
        return
    connecting.result().terminate()
