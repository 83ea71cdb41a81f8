"""Store adapters: ``open_database`` gives every store of a URL's database;
``open_store`` and friends open one store of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagakit.adapters.store.database import (
    DEFAULT_DATABASE,
    ENV_VAR,
    Database,
    applied_migrations,
    database_url,
    event_store_for,
    is_mysql,
    is_postgres,
    is_server,
    migrated_workflow_store,
    notification_store_for,
    open_database,
    open_database_sync,
    schema_has,
    sqlite_path,
    workflow_store_for,
)
from sagakit.errors import StoreError

if TYPE_CHECKING:  # the CLI reads ENV_VAR and database_url() without them
    from sagakit.ports.event_store import EventStore
    from sagakit.ports.store import SagaStore

__all__ = [
    "DEFAULT_DATABASE",
    "ENV_VAR",
    "Database",
    "applied_migrations",
    "database_url",
    "event_store_for",
    "migrated_workflow_store",
    "notification_store_for",
    "open_database",
    "open_database_sync",
    "open_event_store",
    "open_store",
    "open_store_async",
    "schema_has",
    "workflow_store_for",
]


def open_store(url: str | None = None, *, migrate: bool = True) -> SagaStore:
    """Open the saga store a URL names (see :func:`open_database`; not
    PostgreSQL or MySQL, whose drivers are async). Closing the store closes
    its database.
    ``migrate=False`` opens the database without touching its schema."""
    url = database_url(url)
    if url == "memory://":
        from sagakit.adapters.store.memory import InMemoryStore  # noqa: PLC0415

        return InMemoryStore()
    if is_server(url):
        raise StoreError(
            f"open_store() cannot open {url.split(':')[0]} (its driver is async); "
            f"use 'await open_store_async(url)': {url.split('@')[-1]!r}"
        )
    path = sqlite_path(url)
    from sagakit.adapters.store.sqlite import SQLiteStore  # noqa: PLC0415 - lazily

    return SQLiteStore(path, migrate=migrate)


async def open_store_async(
    url: str | None = None, *, migrate: bool = True, max_size: int | None = None
) -> SagaStore:
    """Open the saga store a URL names, PostgreSQL and MySQL included.
    ``max_size``: the most connections it opens to a server at once
    (default 10; SQLite's one file has no pool and ignores it)."""
    url = database_url(url)
    sized = {} if max_size is None else {"max_size": max_size}
    if is_mysql(url):
        from sagakit.adapters.store.mysql import MySQLStore  # noqa: PLC0415

        return await MySQLStore.connect(url, migrate=migrate, **sized)
    if is_postgres(url):
        from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415

        return await PostgresStore.connect(url, migrate=migrate, **sized)
    return open_store(url, migrate=migrate)


async def open_event_store(url: str | None = None) -> EventStore:
    """Open (and migrate) the event store a URL names, like
    :func:`open_store_async`: SQLite, ``postgresql://``, ``mysql://`` or
    ``memory://``. Closing it closes its database."""
    url = database_url(url)
    if is_mysql(url):
        from sagakit.adapters.store.event_mysql import (  # noqa: PLC0415
            MySQLEventStore,
        )

        return await MySQLEventStore.connect(url)
    if is_postgres(url):
        from sagakit.adapters.store.event_postgres import (  # noqa: PLC0415
            PostgresEventStore,
        )

        return await PostgresEventStore.connect(url)
    if url == "memory://":
        return event_store_for(open_store(url))
    from sagakit.adapters.store.event_sqlite import SQLiteEventStore  # noqa: PLC0415

    return SQLiteEventStore(sqlite_path(url))
