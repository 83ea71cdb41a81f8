"""One MySQL or MariaDB database: the connections the saga, workflow and
event stores of that database share.

The named blocks of ``mysql/queries.sql`` use ``$n`` parameters, as on
PostgreSQL; a block may hold several statements, which go to the server in
one round trip (the connections allow multi-statements). A write is its
block between ``START TRANSACTION`` and ``COMMIT``, in that same round trip
(:meth:`MySQLDatabase.write`); a write of several parts (a saga, its history
lines, its outbox messages), or several writes committed together, is a
sequence of blocks in one (:meth:`MySQLDatabase.script`).

Sessions run at READ COMMITTED (as PostgreSQL does: claims lock only the
rows they take), in UTC, and in strict SQL mode (a value too long for its
column is an error, never truncated). The driver is asyncmy (see
``benchmarks/mysql_drivers.py`` for why), through its pool; a connection
whose call did not end with the server's answer (cancelled, broken) is
closed, never given back.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sagakit._extras import needs_extra
from sagakit.adapters.store.owned import Migrations, OnServer
from sagakit.adapters.store.sql import (
    Migration,
    log_migrated,
    migrations,
    queries,
    statements,
)
from sagakit.errors import StoreError

with needs_extra("the MySQL store needs asyncmy", "mysql"):
    import asyncmy
    from asyncmy.constants import CLIENT

SCHEMES = ("mysql://", "mariadb://")
DRIVER_ERRORS = (asyncmy.errors.MySQLError, OSError, TimeoutError)
"""What the driver raises; the stores turn these into StoreError."""
_SESSION = (
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;"
    "SET time_zone = '+00:00',"
    " sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION'"
)
_OWN_MIGRATION = {13: 2, 16: 3}
"""This store's migration that adds what the PostgreSQL one numbered so
adds (the others are all in 0001)."""
_RETRIED = (1213,)  # deadlock: the server rolled the transaction back
_ATTEMPTS = 5
_PARAM = re.compile(r"\$(\d+)")
_BIGGEST = 1.7976931348623157e308
Row = tuple[Any, ...]
Step = tuple[str, Sequence[Any]]
"""A named block and its arguments, one step of a :meth:`MySQLDatabase.script`."""


@cache
def _compiled(query: str) -> tuple[str, tuple[int, ...]]:
    """The named block with the driver's placeholders, and which argument
    each one takes (``$2 ... $2`` takes the second twice)."""
    order: list[int] = []

    def placeholder(match: re.Match[str]) -> str:
        order.append(int(match.group(1)) - 1)
        return "%s"

    text = _PARAM.sub(placeholder, queries("mysql")[query].replace("%", "%%"))
    return text, tuple(order)


def _value(arg: Any) -> Any:
    """An argument as MySQL takes it: infinities become the largest double."""
    if isinstance(arg, float) and math.isinf(arg):
        return math.copysign(_BIGGEST, arg)
    return arg


def bound(query: str, args: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """The text of the named ``query`` and its arguments, in placeholder order."""
    text, order = _compiled(query)
    return text, tuple(_value(args[i]) for i in order)


def is_mysql(url: str) -> bool:
    return url.startswith(SCHEMES)


def options(url: str) -> dict[str, Any]:
    """asyncmy's connect arguments for ``mysql://user:pw@host:port/db``
    (or ``mariadb://``; ``?unix_socket=/path`` to use a socket)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"unix_socket"}
    if unknown:
        raise StoreError(
            f"unknown MySQL URL parameter(s): {', '.join(sorted(unknown))}"
        )
    found: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")) or None,
    }
    if "unix_socket" in query:
        found["unix_socket"] = query["unix_socket"]
    return found


def describe(url: str) -> str:
    """``host:port/database`` of a URL, without credentials (for messages)."""
    try:
        found = options(url)
    except (ValueError, StoreError):
        return "<unparsable URL>"
    return f"{found['host']}:{found['port']}/{found['database'] or ''}"


def reason(exc: BaseException) -> str:
    """One line saying what the driver reported."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, asyncmy.errors.MySQLError) and len(exc.args) == 2:  # noqa: PLR2004
        code, message = exc.args
        if code == 2003:  # noqa: PLR2004 - CR_CONN_HOST_ERROR
            return "connection refused (is the server running?)"
        return f"{type(exc).__name__} {code}: {str(message).splitlines()[0]}"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def errno(exc: BaseException) -> int | None:
    """The server's error number of a driver error, if it has one."""
    if isinstance(exc, asyncmy.errors.MySQLError) and exc.args:
        code = exc.args[0]
        return code if isinstance(code, int) else None
    return None


def _usable_after(exc: BaseException) -> bool:
    """Whether a connection whose call raised ``exc`` can serve again: the
    server answered with an error (numbers below 2000; 2000 and up are the
    client's: lost connection and the like)."""
    code = errno(exc)
    return code is not None and 1000 <= code < 2000  # noqa: PLR2004


async def _results(cur: Any) -> list[list[Row]]:
    """The rows of every statement of the block just executed that returns
    rows (its SELECTs), in order."""
    found: list[list[Row]] = []
    while True:
        if cur.description is not None:
            found.append(list(await cur.fetchall()))
        if not await cur.nextset():
            return found


class MySQLDatabase(Migrations):
    """An open MySQL or MariaDB database: pool, named queries, error
    wrapping, transactions, migrations and the counters ``commits`` and
    ``statements`` (round trips). Stores compose it; whoever opened it closes
    it. Open it with ``await MySQLDatabase.connect(url)``.
    """

    dialect = "MySQL"
    driver_errors = DRIVER_ERRORS
    """What the driver raises; stores turn it into a StoreError (:meth:`error`)."""
    reason = staticmethod(reason)

    @classmethod
    async def connect(
        cls, url: str, *, min_size: int = 1, max_size: int = 10, migrate: bool = True
    ) -> MySQLDatabase:
        """Open a pool on ``url`` and, unless ``migrate=False``, migrate."""
        where = describe(url)
        try:
            pool = await asyncmy.create_pool(
                minsize=min(min_size, max_size),
                maxsize=max_size,
                **options(url),
                charset="utf8mb4",
                autocommit=True,
                binary_prefix=True,
                client_flag=CLIENT.MULTI_STATEMENTS,
                init_command=_SESSION,
            )
        except (*DRIVER_ERRORS, ValueError) as exc:
            raise cls.unreachable(where, exc) from exc
        return await cls(pool, where=where).opened(migrate=migrate)

    # -- connections ---------------------------------------------------------

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection; closed instead of given back unless the block
        ended normally or with the server's own error."""
        conn = await self._pool.acquire()
        usable = False
        try:
            yield conn
            usable = True
        except DRIVER_ERRORS as exc:
            usable = _usable_after(exc)
            raise
        finally:
            if not usable:
                conn.close()
            self._pool.release(conn)

    @staticmethod
    def sql(query: str) -> str:
        """The text of a named query of ``mysql/queries.sql`` (``$n`` as written)."""
        return queries("mysql")[query]

    @staticmethod
    def callers(conn: Any, method: str) -> Any:
        """``conn`` if it is an asyncmy connection (a caller's own, for a
        statement inside its transaction); else a clear StoreError."""
        if not isinstance(conn, asyncmy.Connection):
            raise StoreError(
                f"{method} needs an asyncmy connection, not {type(conn).__name__}"
            )
        return conn

    # -- statements ----------------------------------------------------------

    @staticmethod
    async def run(conn: Any, query: str, *args: Any) -> tuple[list[list[Row]], int]:
        """The named block on ``conn`` (in whatever transaction it has open):
        the rows of each of its SELECTs, and the rows its last statement
        affected. Driver errors are the caller's to wrap."""
        text, values = bound(query, args)
        async with conn.cursor() as cur:
            await cur.execute(text, values)
            affected = cur.rowcount
            return await _results(cur), affected

    async def run_alone(
        self, about: str, query: str, *args: Any
    ) -> tuple[list[list[Row]], int]:
        """:meth:`run` on a connection of its own (autocommit: each statement
        its own transaction), counted; a driver error becomes a StoreError
        about ``about``."""
        self.statements += 1
        try:
            async with self.connection() as conn:
                return await self.run(conn, query, *args)
        except DRIVER_ERRORS as exc:
            raise self.error(about, exc) from exc

    async def fetch(self, about: str, query: str, *args: Any) -> list[Row]:
        """The rows of the named block's last SELECT, run on its own
        (autocommit: each statement its own transaction)."""
        found, _ = await self.run_alone(about, query, *args)
        return found[-1] if found else []

    async def fetch_replanned(self, about: str, query: str, *args: Any) -> list[Row]:
        """:meth:`fetch`: the server plans each statement with its values in
        the text, so no plan made for other arguments is reused."""
        return await self.fetch(about, query, *args)

    async def fetchrow(self, about: str, query: str, *args: Any) -> Row | None:
        found = await self.fetch(about, query, *args)
        return found[0] if found else None

    async def execute(self, about: str, query: str, *args: Any) -> int:
        """The named single statement on its own (autocommit); the rows it
        affected."""
        _, affected = await self.run_alone(about, query, *args)
        return affected

    async def write(
        self, about: str, query: str, *args: Any, counted: bool = True
    ) -> list[Row]:
        """The named block in a transaction of its own, committed (and
        counted, unless ``counted=False``: a caller that counts only what
        changed something), in one round trip: the rows of its last SELECT."""
        found = await self.script(about, [(query, args)], counted=counted)
        return found[-1] if found else []

    async def script(
        self, about: str, steps: Sequence[Step], *, counted: bool = True
    ) -> list[list[Row]]:
        """The named blocks of ``steps`` (a block and its arguments each), in
        order, in one transaction and one round trip: the rows of each of
        their SELECTs. A deadlock (the server rolled everything back) is
        retried; any other error rolls the transaction back and becomes a
        StoreError."""
        texts, values = [_compiled("begin")[0]], list[Any]()
        for query, args in steps:
            text, bound_args = bound(query, args)
            texts.append(text)
            values.extend(bound_args)
        texts.append(_compiled("commit")[0])
        script = "\n".join(texts)
        for attempt in range(1, _ATTEMPTS + 1):
            self.statements += 1
            try:
                async with self.connection() as conn:
                    found = await self._script(conn, script, values)
            except DRIVER_ERRORS as exc:
                if errno(exc) in _RETRIED and attempt < _ATTEMPTS:
                    continue
                raise self.error(about, exc) from exc
            self.commits += counted
            return found
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _script(conn: Any, script: str, values: list[Any]) -> list[list[Row]]:
        """Execute a whole transaction script on ``conn``; roll back what an
        error left open before raising it."""
        try:
            async with conn.cursor() as cur:
                await cur.execute(script, values)
                found = await _results(cur)
        except DRIVER_ERRORS as exc:
            if _usable_after(exc):
                async with conn.cursor() as cur:
                    await cur.execute("ROLLBACK")
            raise
        return found

    @asynccontextmanager
    async def begun(self) -> AsyncIterator[Any]:
        """A pooled connection inside a transaction (see :meth:`transaction`).
        Run named blocks on it with :meth:`run`."""
        async with self.connection() as conn:
            await conn.begin()
            try:
                yield conn
            except BaseException:
                if conn.connected:
                    await conn.rollback()
                raise
            await conn.commit()

    # -- schema --------------------------------------------------------------

    async def migrate(
        self, progress: Callable[[Migration], object] | None = None
    ) -> list[int]:
        """Apply pending migrations, each statement as it comes (MySQL commits
        DDL at once; the migrations can run again after a crash part-way),
        recording each migration when it is done. Concurrent migrators wait
        on a lock named after the database. ``progress`` is called after each
        one (``sagakit db migrate``)."""
        applied: list[int] = []
        try:
            async with self.connection() as conn:
                await self.run(conn, "lock_migrations")
                try:
                    (exists,), _ = await self.run(conn, "migrations_table_exists")
                    if not exists[0][0]:  # IF NOT EXISTS would warn: a round trip
                        await self.run(conn, "create_migrations_table")
                    (done,), _ = await self.run(conn, "applied_migrations")
                    for m in migrations("mysql"):
                        if m.version in {row[0] for row in done}:
                            continue
                        for statement in statements(m.sql):
                            async with conn.cursor() as cur:
                                await cur.execute(statement)
                        await self.run(conn, "record_migration", m.version, m.name)
                        applied.append(m.version)
                        if progress is not None:
                            progress(m)
                finally:
                    await self.run(conn, "unlock_migrations")
        except DRIVER_ERRORS as exc:
            raise self.error("migration", exc) from exc
        return log_migrated(applied, self.where)

    async def schema_has(self, version: int) -> bool:
        """Whether the schema has what migration ``version`` of the SQLite
        and PostgreSQL stores adds: their semantic locks (13) are this
        store's 0002, the notifications and search (16) its 0003, all the
        rest is in its first migration."""
        return _OWN_MIGRATION.get(version, 1) in await self.applied_migrations()

    async def close(self) -> None:
        self._pool.terminate()
        await self.closing(self._pool.wait_closed())


class OnMySQL(OnServer[MySQLDatabase]):
    """What every MySQL store has (see :class:`OnServer`)."""

    kind = MySQLDatabase
    dialect = MySQLDatabase.dialect

    async def schema_has(self, version: int) -> bool:
        """See :meth:`MySQLDatabase.schema_has`."""
        return await self.database.schema_has(version)
