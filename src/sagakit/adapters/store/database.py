"""``open_database(url)``: every store of one database, on one connection.

The URL's scheme picks the dialect: ``postgresql://`` (or ``postgres://``),
``mysql://`` (or ``mariadb://``), ``sqlite:///relative.db``,
``sqlite:////absolute.db``, ``sqlite://:memory:``, a plain file path (SQLite),
or ``memory://`` (this process only).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from sagakit.errors import StoreError

if TYPE_CHECKING:  # reading a URL (the CLI's start-up) needs none of them
    from sagakit.ports.event_store import EventStore
    from sagakit.ports.notification_store import NotificationStore
    from sagakit.ports.store import SagaStore
    from sagakit.ports.workflow_store import WorkflowStore

DEFAULT_DATABASE = "sagakit.db"
ENV_VAR = "SAGAKIT_DATABASE_URL"
_POSTGRES = ("postgres://", "postgresql://")
_MYSQL = ("mysql://", "mariadb://")


def database_url(url: str | None = None) -> str:
    """The explicit URL, else ``$SAGAKIT_DATABASE_URL``, else ``./sagakit.db``."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_DATABASE


def is_postgres(url: str) -> bool:
    return url.startswith(_POSTGRES)


def is_mysql(url: str) -> bool:
    return url.startswith(_MYSQL)


def is_server(url: str) -> bool:
    """Whether the URL names a database server (PostgreSQL, MySQL), whose
    drivers are async."""
    return url.startswith(_POSTGRES + _MYSQL)


def dialect(url: str) -> str:
    """``postgres``, ``mysql`` or ``sqlite``: whose SQL files a URL's database
    uses (a StoreError for ``memory://`` and unknown schemes)."""
    if is_postgres(url):
        return "postgres"
    if is_mysql(url):
        return "mysql"
    sqlite_path(url)
    return "sqlite"


def sqlite_path(url: str) -> str:
    """The file a SQLite URL (or plain path) names; StoreError for any other."""
    if url.startswith("sqlite://"):
        # SQLAlchemy style: sqlite:///relative.db, sqlite:////absolute.db
        path = (
            url.removeprefix("sqlite:///")
            if url.startswith("sqlite:///")
            else url.removeprefix("sqlite://")
        )
    elif "://" in url:
        raise StoreError(
            f"unsupported database URL scheme: {url.split('://', maxsplit=1)[0]!r}"
        )
    else:
        path = url
    if not path:
        raise StoreError(f"database URL {url!r} names no file")
    if path != ":memory:" and not Path(path).parent.exists():
        raise StoreError(f"directory of database {path!r} does not exist")
    return path


@dataclass(slots=True)
class Database:
    """The stores of one database, sharing its connection: ``sagas``,
    ``events`` (choreography) and ``workflows`` (None where the database
    keeps none: ``memory://``, whose workflow instances live in the process
    running them). Closing it closes the connection; use it as an async
    context manager."""

    url: str
    sagas: SagaStore
    events: EventStore
    workflows: WorkflowStore | None
    _close: Callable[[], Awaitable[None]]

    async def close(self) -> None:
        await self._close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def open_database_sync(url: str | None = None, *, migrate: bool = True) -> Database:
    """:func:`open_database` for SQLite and ``memory://`` (no event loop
    needed); PostgreSQL and MySQL, whose drivers are async, are a StoreError."""
    url = database_url(url)
    if url == "memory://":
        from sagakit.adapters.store.event_memory import (  # noqa: PLC0415
            InMemoryEventStore,
        )
        from sagakit.adapters.store.memory import InMemoryStore  # noqa: PLC0415

        sagas = InMemoryStore()
        return Database(url, sagas, InMemoryEventStore(sagas), None, sagas.close)
    if is_server(url):
        raise StoreError(
            f"open_database_sync() cannot open {url.split(':')[0]} (its driver is "
            f"async); use 'await open_database(url)': {url.split('@')[-1]!r}"
        )
    path = sqlite_path(url)
    # drivers load lazily
    from sagakit.adapters.store.sqlite import SQLiteStore  # noqa: PLC0415
    from sagakit.adapters.store.sqlite_database import SQLiteDatabase  # noqa: PLC0415

    database = SQLiteDatabase(path, migrate=migrate)
    store = SQLiteStore(database)
    return Database(
        url, store, store.event_store(), store.workflow_store(), database.close
    )


async def open_database(url: str | None = None, *, migrate: bool = True) -> Database:
    """Every store of the database ``url`` names, on one connection (pool).

    ``migrate=False`` opens the database without touching its schema."""
    url = database_url(url)
    if is_mysql(url):
        from sagakit.adapters.store.mysql import (  # noqa: PLC0415 - needs asyncmy
            MySQLDatabase,
            MySQLStore,
        )

        mysql = await MySQLDatabase.connect(url, migrate=migrate)
        on_mysql = MySQLStore(mysql)
        return Database(
            url,
            on_mysql,
            on_mysql.event_store(),
            on_mysql.workflow_store(),
            mysql.close,
        )
    if not is_postgres(url):
        return open_database_sync(url, migrate=migrate)
    from sagakit.adapters.store.postgres import (  # noqa: PLC0415 - needs asyncpg
        PostgresDatabase,
        PostgresStore,
    )

    database = await PostgresDatabase.connect(url, migrate=migrate)
    store = PostgresStore(database)
    return Database(
        url, store, store.event_store(), store.workflow_store(), database.close
    )


def event_store_for(store: object) -> EventStore:
    """The choreography tables of an open saga store, on its connection."""
    from sagakit.ports.event_store import EventStoreSource  # noqa: PLC0415 - see top

    if isinstance(store, EventStoreSource):
        return store.event_store()
    raise StoreError(f"{type(store).__name__} keeps no choreography tables")


def workflow_store_for(store: object) -> WorkflowStore:
    """The workflow tables of an open saga store, on its connection; a
    StoreError if its database keeps none."""
    make = getattr(store, "workflow_store", None)
    if make is None:
        raise StoreError(
            "keeps workflow instances only inside the process running them"
        )
    workflows: WorkflowStore = make()
    return workflows


def notification_store_for(store: object) -> NotificationStore:
    """The notifications for hooks of an open saga store, on its connection
    (migration 0016); a StoreError for a store that keeps none."""
    make = getattr(store, "notification_store", None)
    if make is None:
        raise StoreError(f"{type(store).__name__} keeps no notifications for hooks")
    notifications: NotificationStore = make()
    return notifications


WORKFLOW_MIGRATION = 4
"""The migration that creates the workflow tables (0004_workflows.sql)."""


async def applied_migrations(store: object) -> list[int]:
    """The migration versions applied to an open store's database (none for
    a store that keeps no schema)."""
    listed = getattr(store, "applied_migrations", None)
    if listed is None:
        return []
    found = listed()
    if inspect.isawaitable(found):
        found = await found
    return list(found)


async def schema_has(store: object, version: int) -> bool:
    """Whether the schema of an open store (or database) has what migration
    ``version`` of the SQLite and PostgreSQL stores adds (a store numbered
    otherwise, MySQL's, answers for itself)."""
    has = getattr(store, "schema_has", None)
    if has is not None:
        return bool(await has(version))
    return version in await applied_migrations(store)


async def migrated_workflow_store(store: object) -> WorkflowStore:
    """:func:`workflow_store_for`, once the database has the workflow tables;
    else a StoreError that says how to add them."""
    workflows = workflow_store_for(store)
    if not await schema_has(store, WORKFLOW_MIGRATION):
        raise StoreError(
            "has no workflow tables; apply the migrations: sagakit db migrate"
        )
    return workflows
