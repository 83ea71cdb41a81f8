"""One PostgreSQL database: the connections the saga, workflow and event
stores of that database share.

One-statement calls run on a lean connection lane (:mod:`.pg_connections`);
transactions and migrations take a connection of a small asyncpg pool, which
connects when first used: opening the database connects the lane alone (one
connection for a read-only command such as ``sagakit list``).
Connections keep no session state (advisory locks are transaction-scoped), so
the pool skips asyncpg's reset query and a released connection costs no round
trip; an open transaction is still rolled back by asyncpg itself.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import unquote, urlsplit

from sagakit._extras import needs_extra
from sagakit.adapters.store.owned import Migrations, OnServer
from sagakit.adapters.store.pg_connections import Connections
from sagakit.adapters.store.sql import Migration, Queries, log_migrated, migrations
from sagakit.errors import StoreError

with needs_extra("the PostgreSQL store needs asyncpg", "postgres"):
    import asyncpg

from asyncpg.pool import PoolConnectionProxy

_Q = Queries("postgres")  # each parsed when first run
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
"""What the driver raises; the stores turn these into StoreError."""
UniqueViolation = asyncpg.UniqueViolationError
_POOL_MAX = 4
Row = asyncpg.Record


def describe(dsn: str) -> str:
    """``host:port/database`` of a DSN, without credentials (for messages)."""
    try:
        parts = urlsplit(dsn)
        port = parts.port or 5432
    except ValueError:
        return "<unparsable DSN>"
    database = unquote(parts.path.lstrip("/")) or parts.username or "postgres"
    return f"{parts.hostname or 'localhost'}:{port}/{database}"


def reason(exc: BaseException) -> str:
    """One line saying what the driver reported."""
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError)
        and (exc.errno == errno.ECONNREFUSED or "Connect call failed" in str(exc))
    ):
        return "connection refused (is the server running?)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def split_connections(max_size: int) -> tuple[int, int]:
    """How ``max_size`` connections divide between the transaction pool and
    the lane of one-statement calls: the pool takes up to half, at most
    ``_POOL_MAX``, the lane the rest; one each at the least."""
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, not {max_size}")
    pooled = min(_POOL_MAX, max(1, max_size // 2))
    return pooled, max(1, max_size - pooled)


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo (see the module docstring)."""


async def _close(conn: asyncpg.Connection) -> None:
    await conn.close()


class PostgresDatabase(Migrations):
    """An open PostgreSQL database: pool and lane, named queries, error
    wrapping, transactions, migrations and the counters ``commits`` and
    ``statements`` (round trips of one-statement calls). Stores compose it;
    whoever opened it closes it.

    Open it with ``await PostgresDatabase.connect(dsn)``.
    """

    dialect = "PostgreSQL"
    driver_errors = DRIVER_ERRORS
    """What the driver raises; stores turn it into a StoreError (:meth:`error`)."""
    reason = staticmethod(reason)

    _pool: asyncpg.Pool

    def __init__(
        self, pool: asyncpg.Pool, *, where: str, lane: Connections | None = None
    ) -> None:
        super().__init__(pool, where=where)
        self._lane = lane

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        migrate: bool = True,
    ) -> PostgresDatabase:
        """Open ``min_size`` connections (at least one: the server must be
        reachable) on ``dsn`` and, unless ``migrate=False``, migrate.

        ``max_size`` bounds the connections open at once, lane and pool
        together (2 at the least: one of each); each channel listened to
        (:meth:`listen`) adds a connection of its own."""
        where = describe(dsn)
        pooled, lane_size = split_connections(max_size)
        lane = Connections(dsn, max_size=lane_size)
        try:
            await lane.open(max(1, min(min_size, lane_size)))
            pool = await asyncpg.create_pool(
                dsn,
                # statements run on the lane; the pool serves migrations and
                # transactions, so it stays small (fewer server connections)
                # and connects on first use
                min_size=0,
                max_size=pooled,
                reset=_keep_session,
            )
        except (*DRIVER_ERRORS, ValueError) as exc:
            await lane.close()
            raise cls.unreachable(where, exc) from exc
        return await cls(pool, where=where, lane=lane).opened(migrate=migrate)

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool (for a caller's own transaction on this database)."""
        return self._pool

    # -- statements ----------------------------------------------------------

    @staticmethod
    def sql(query: str) -> str:
        """The text of a named query of ``postgres/queries.sql``."""
        return _Q[query]

    @staticmethod
    def callers(conn: Any, method: str) -> Any:
        """``conn`` if it is an asyncpg connection (a caller's own, for a
        statement inside its transaction); else a clear StoreError."""
        if not isinstance(conn, asyncpg.Connection | PoolConnectionProxy):
            raise StoreError(
                f"{method} needs an asyncpg connection, not {type(conn).__name__}"
            )
        return conn

    async def fetch(self, about: str, query: str, *args: Any) -> list[Row]:
        """The rows of the named query, one statement in its own transaction."""
        self.statements += 1
        try:
            if self._lane is None:
                return await self._pool.fetch(_Q[query], *args)
            async with self._lane.connection() as conn:
                return await conn.fetch(_Q[query], *args)
        except DRIVER_ERRORS as exc:
            raise self.error(about, exc) from exc

    async def fetch_replanned(self, about: str, query: str, *args: Any) -> list[Row]:
        """:meth:`fetch`, planned for these arguments on every call: for reads
        whose best plan depends on the values (a status or saga name with no
        instance, or most of them), where the generic plan PostgreSQL caches
        after five calls of a prepared statement could read every saga. The
        statement is prepared for this call alone (its first execution gets
        a plan of its own): one more round trip, which an operator's read
        can afford."""
        self.statements += 1
        try:
            if self._lane is None:
                async with self._pool.acquire() as conn:
                    return await (await conn.prepare(_Q[query])).fetch(*args)
            async with self._lane.connection() as conn:
                return await (await conn.prepare(_Q[query])).fetch(*args)
        except DRIVER_ERRORS as exc:
            raise self.error(about, exc) from exc

    async def fetchrow(self, about: str, query: str, *args: Any) -> Row | None:
        """The first row of the named query (one statement), or None."""
        self.statements += 1
        try:
            if self._lane is None:
                return await self._pool.fetchrow(_Q[query], *args)
            async with self._lane.connection() as conn:
                return await conn.fetchrow(_Q[query], *args)
        except DRIVER_ERRORS as exc:
            raise self.error(about, exc) from exc

    async def fetchmany(
        self, about: str, query: str, args: list[tuple[Any, ...]]
    ) -> list[Row]:
        """The named query once per argument tuple, pipelined in one round
        trip and one implicit transaction (all or nothing); the first row of
        each run."""
        self.statements += 1
        try:
            if self._lane is None:
                async with self._pool.acquire() as conn:
                    return await conn.fetchmany(_Q[query], args)
            async with self._lane.connection() as conn:
                return await conn.fetchmany(_Q[query], args)
        except DRIVER_ERRORS as exc:
            raise self.error(about, exc) from exc

    @asynccontextmanager
    async def begun(self) -> AsyncIterator[Any]:
        """A pooled connection inside a transaction (see :meth:`transaction`).
        Run named queries on it with :meth:`sql`."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    async def listen(
        self, channel: str, heard: Callable[[], None]
    ) -> Callable[[], Awaitable[None]]:
        """Call ``heard`` on each notice on ``channel`` (``LISTEN``), on a
        connection of its own (one of the pool's without a lane); returns
        what stops listening and lets the connection go."""

        def notice(*_: Any) -> None:
            heard()

        take: Callable[[], Awaitable[Any]]
        let_go: Callable[[Any], Awaitable[None]]
        if self._lane is None:
            take, let_go = self._pool.acquire, self._pool.release
        else:
            take, let_go = self._lane.dedicated, _close
        try:
            conn: Any = await take()
        except DRIVER_ERRORS as exc:
            raise self.error(f"listening to {channel}", exc) from exc

        async def stop() -> None:
            # a connection of its own just closes (that ends the LISTEN); a
            # pool's unlistens first, or its next user would hear the
            # channel. Cancelled (its watch stopping with the loop), the
            # connection is cut off and let go all the same, never leaked.
            try:
                if self._lane is None:
                    with suppress(*DRIVER_ERRORS):
                        await conn.remove_listener(channel, notice)
            except BaseException:
                conn.terminate()
                raise
            finally:
                with suppress(*DRIVER_ERRORS):
                    await asyncio.shield(let_go(conn))

        try:
            await conn.add_listener(channel, notice)
        except BaseException as exc:
            # cancelled too (a lock watch stopping): the connection is let
            # go as a stop lets it go, not left to the garbage collector
            await stop()
            if isinstance(exc, DRIVER_ERRORS):
                raise self.error(f"listening to {channel}", exc) from exc
            raise
        return stop

    # -- schema --------------------------------------------------------------

    async def migrate(
        self, progress: Callable[[Migration], object] | None = None
    ) -> list[int]:
        """Apply pending migrations in one transaction; returns the versions
        applied. Concurrent migrators wait on an advisory lock. ``progress``
        is called after each one (``sagakit db migrate``). A database that
        has them all is only read (a read-only role or standby opens too)."""
        applied: list[int] = []
        have = set(await self.applied_migrations())
        if all(m.version in have for m in migrations("postgres")):
            return applied
        async with self.transaction("migration") as conn:
            await conn.execute(_Q["lock_migrations"])
            await conn.execute(_Q["create_migrations_table"])
            done = {r[0] for r in await conn.fetch(_Q["applied_migrations"])}
            for m in migrations("postgres"):
                if m.version in done:
                    continue
                await conn.execute(m.sql)
                await conn.execute(_Q["record_migration"], m.version, m.name)
                applied.append(m.version)
                if progress is not None:
                    progress(m)
        return log_migrated(applied, self.where)

    async def close(self) -> None:
        await self.closing(self._close())

    async def _close(self) -> None:
        if self._lane is not None:
            await self._lane.close()
        await self._pool.close()


class OnPostgres(OnServer[PostgresDatabase]):
    """What every PostgreSQL store has (see :class:`OnServer`)."""

    kind = PostgresDatabase
    dialect = PostgresDatabase.dialect
