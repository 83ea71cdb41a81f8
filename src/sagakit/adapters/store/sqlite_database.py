"""One SQLite file in WAL mode: the connection the saga, workflow and event
stores of that file share.

Calls run on the event loop's thread: a commit in WAL mode takes tens of
microseconds, far less than a hop to a worker thread. ``synchronous=NORMAL``
(the default here) survives a killed process; pass ``synchronous="full"`` to
survive a power cut as well, at the price of an fsync per commit.

The commit that finds the write-ahead log past ``checkpoint_pages`` copies
it into the file (a checkpoint, with two fsyncs under ``synchronous=NORMAL``)
and so holds up the event loop for a few milliseconds, however many pages
it copies. SQLite's default, 1000 pages, did so every 20-odd sagas of three
remote steps (about 45 pages each); :data:`CHECKPOINT_PAGES` does it 8
times less often, for a log of up to 32 MB.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sagakit.adapters.store.owned import OnDatabase
from sagakit.adapters.store.sql import Migration, log_migrated, migrations, queries
from sagakit.errors import StoreError

_Q = queries("sqlite")
_SYNC_MODES = ("off", "normal", "full", "extra")
CACHE_MB = 64
"""Page cache of the connection, at most (SQLite's own default is 2 MB):
the pages of a store's indexes that a write reads stay in memory."""
MMAP_MB = 2048
"""The file mapped in memory, up to this size (SQLite caps it, commonly at
2 GB): a page the cache lacks is read without a system call."""
CHECKPOINT_PAGES = 8000
"""Pages of write-ahead log after which a commit checkpoints it (SQLite's
``wal_autocheckpoint``; its default is 1000): see the module."""


def split_statements(script: str) -> list[str]:
    """Split a SQL script into complete statements (trigger bodies included)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise StoreError(f"incomplete SQL statement: {buffer.strip()[:80]!r}")
    return statements


class SQLiteDatabase:
    """An open SQLite file: its connection, transactions, named queries,
    migrations and commit counter. Stores compose it; whoever opened it
    closes it.

    The schema is migrated when it opens (unless ``migrate=False``).
    ``path=":memory:"`` keeps everything in memory (tests, benchmarks).
    ``cache_mb`` (64) bounds the connection's page cache and ``mmap_mb``
    (2048) the part of the file read through a memory map (0: none): at a
    million stored sagas, SQLite's defaults (2 MB, no map) read index pages
    from the file on every write. ``checkpoint_pages`` (8000; 0: never, for
    whoever checkpoints by hand) is the log's size that makes a commit
    checkpoint it (see the module).
    """

    driver_errors = sqlite3.Error
    """What the driver raises; stores turn it into a StoreError (:meth:`error`)."""

    def __init__(
        self,
        path: str | Path = "sagakit.db",
        *,
        synchronous: str = "normal",
        migrate: bool = True,
        cache_mb: int = CACHE_MB,
        mmap_mb: int = MMAP_MB,
        checkpoint_pages: int = CHECKPOINT_PAGES,
    ) -> None:
        if synchronous.lower() not in _SYNC_MODES:
            raise StoreError(
                f"synchronous must be one of {_SYNC_MODES}, got {synchronous!r}"
            )
        sizes = (
            ("cache_mb", cache_mb),
            ("mmap_mb", mmap_mb),
            ("checkpoint_pages", checkpoint_pages),
        )
        for name, size in sizes:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise StoreError(f"{name} must be an int >= 0, got {size!r}")
        self.path = str(path)
        self.commits = 0
        try:
            self.conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            # checked against _SYNC_MODES above; PRAGMA takes no bound parameters
            self.conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA busy_timeout=10000")
            # checked above: ints; negative cache_size is KiB, not pages
            self.conn.execute(f"PRAGMA cache_size=-{cache_mb * 1024}")
            self.conn.execute(f"PRAGMA mmap_size={mmap_mb * 1024 * 1024}")
            self.conn.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open SQLite database {self.path!r}: {exc}"
            ) from exc
        if migrate:
            self.migrate()

    @property
    def where(self) -> str:
        """The file (for messages)."""
        return self.path

    # -- statements ----------------------------------------------------------

    @staticmethod
    def callers(conn: Any, method: str) -> sqlite3.Connection:
        """``conn`` if it is a ``sqlite3.Connection`` (a caller's own, for a
        statement inside its transaction); else a clear StoreError."""
        if not isinstance(conn, sqlite3.Connection):
            raise StoreError(
                f"{method} needs a sqlite3.Connection, not {type(conn).__name__}"
            )
        return conn

    def error(self, about: str, exc: sqlite3.Error) -> StoreError:
        """``exc`` as the StoreError to raise ``from`` it."""
        return StoreError(f"{about} failed on {self.path!r}: {exc}")

    @staticmethod
    def sql(query: str) -> str:
        """The text of a named query of ``sqlite/queries.sql``."""
        return _Q[query]

    def execute(self, query: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run the named query (inside :meth:`transaction`, which wraps errors)."""
        return self.conn.execute(_Q[query], params)

    def executemany(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(_Q[query], rows)

    def fetchall(
        self, about: str, query: str, params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """The rows of the named query, outside a transaction (a read)."""
        try:
            return self.conn.execute(_Q[query], params).fetchall()
        except sqlite3.Error as exc:
            raise self.error(about, exc) from exc

    async def fetch(self, about: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """:meth:`fetchall` with the signature of ``PostgresDatabase.fetch``."""
        return self.fetchall(about, query, args)

    async def fetch_replanned(
        self, about: str, query: str, *args: Any
    ) -> list[tuple[Any, ...]]:
        """:meth:`fetch` (SQLite plans a statement without looking at its
        arguments: there is no cached plan to avoid, unlike PostgreSQL)."""
        return self.fetchall(about, query, args)

    @contextmanager
    def transaction(self, about: str = "transaction") -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any exception),
        counted in ``commits``; a driver error becomes a StoreError saying
        ``about`` failed."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot start a transaction on {self.path!r}: {exc}"
            ) from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise self.error(about, exc) from exc
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError(f"commit failed on {self.path!r}: {exc}") from exc
        self.commits += 1

    # -- schema --------------------------------------------------------------

    def migrate(
        self, progress: Callable[[Migration], object] | None = None
    ) -> list[int]:
        """Apply pending migrations; returns the versions applied.
        ``progress`` is called after each one (``sagakit db migrate``)."""
        applied: list[int] = []
        with self.transaction("migration") as conn:
            self.execute("create_migrations_table")
            done = {row[0] for row in self.execute("applied_migrations")}
            for m in migrations("sqlite"):
                if m.version in done:
                    continue
                for statement in split_statements(m.sql):
                    conn.execute(statement)
                self.execute("record_migration", (m.version, m.name, time.time()))
                applied.append(m.version)
                if progress is not None:
                    progress(m)
        return log_migrated(applied, self.path)

    def applied_migrations(self) -> list[int]:
        """Versions applied so far (none on a database sagakit never touched)."""
        about = "listing migrations"
        (exists,) = self.fetchall(about, "migrations_table_exists")[0]
        if not exists:
            return []
        return [row[0] for row in self.fetchall(about, "applied_migrations")]

    async def close(self) -> None:
        self.close_sync()

    def close_sync(self) -> None:
        self.conn.close()

    def __repr__(self) -> str:
        return f"SQLiteDatabase({self.path!r})"


def sqlite_database_of(source: Any) -> SQLiteDatabase | None:
    """The database of an open SQLite store (or the database itself)."""
    if isinstance(source, SQLiteDatabase):
        return source
    database = getattr(source, "database", None)
    return database if isinstance(database, SQLiteDatabase) else None


class OnSQLite(OnDatabase[SQLiteDatabase]):
    """What every SQLite store has: its database (opened from a path, or an
    open one shared), whether it opened it (then ``close`` closes it), and
    the database's commit counter."""

    blocking_writes = True
    """Writes run on the event loop's thread and never yield to it: group
    commits wait a few turns of the loop for more (see
    :mod:`sagakit.runtime.group`)."""

    def __init__(
        self,
        path: str | Path | SQLiteDatabase | Any = "sagakit.db",
        *,
        synchronous: str = "normal",
        migrate: bool = True,
        owned: bool = False,
        cache_mb: int = CACHE_MB,
        mmap_mb: int = MMAP_MB,
        checkpoint_pages: int = CHECKPOINT_PAGES,
    ) -> None:
        shared = sqlite_database_of(path)
        self.database = shared or SQLiteDatabase(
            cast("str | Path", path),
            synchronous=synchronous,
            migrate=migrate,
            cache_mb=cache_mb,
            mmap_mb=mmap_mb,
            checkpoint_pages=checkpoint_pages,
        )
        self._owned = owned or shared is None
        self.path = self.database.path
