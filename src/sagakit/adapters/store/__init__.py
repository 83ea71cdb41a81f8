"""Store adapters, and ``open_store`` to pick one from a URL."""

from __future__ import annotations

import os
from pathlib import Path

from sagakit.errors import StoreError
from sagakit.ports.event_store import EventStore
from sagakit.ports.store import SagaStore

DEFAULT_DATABASE = "sagakit.db"
ENV_VAR = "SAGAKIT_DATABASE_URL"


def database_url(url: str | None = None) -> str:
    """The explicit URL, else ``$SAGAKIT_DATABASE_URL``, else ``./sagakit.db``."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_DATABASE


def open_store(url: str | None = None, *, migrate: bool = True) -> SagaStore:
    """Open the store a URL names.

    ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://:memory:``,
    a plain file path (all SQLite), or ``memory://`` (this process only).
    ``migrate=False`` opens the database without touching its schema.
    """
    url = database_url(url)
    if url == "memory://":
        from sagakit.adapters.store.memory import InMemoryStore  # noqa: PLC0415

        return InMemoryStore()
    if url.startswith(("postgres://", "postgresql://")):
        raise StoreError(
            "open_store() cannot open PostgreSQL (its driver is async); use "
            f"'await open_store_async(url)': {url.split('@')[-1]!r}"
        )
    if url.startswith("sqlite://"):
        # SQLAlchemy style: sqlite:///relative.db, sqlite:////absolute.db
        path = (
            url.removeprefix("sqlite:///")
            if url.startswith("sqlite:///")
            else (url.removeprefix("sqlite://"))
        )
    elif "://" in url:
        raise StoreError(f"unsupported database URL scheme: {url.split('://')[0]!r}")
    else:
        path = url
    if not path:
        raise StoreError(f"database URL {url!r} names no file")
    from sagakit.adapters.store.sqlite import SQLiteStore  # noqa: PLC0415 - drivers load lazily

    if path != ":memory:" and not Path(path).parent.exists():
        raise StoreError(f"directory of database {path!r} does not exist")
    return SQLiteStore(path, migrate=migrate)


async def open_store_async(
    url: str | None = None, *, migrate: bool = True
) -> SagaStore:
    """Open the store a URL names, PostgreSQL included.

    ``postgresql://user@host:5432/db`` (or ``postgres://``) opens a migrated
    :class:`~sagakit.adapters.store.postgres.PostgresStore`; any other URL goes
    to :func:`open_store`.
    """
    url = database_url(url)
    if url.startswith(("postgres://", "postgresql://")):
        from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415

        return await PostgresStore.connect(url, migrate=migrate)
    return open_store(url, migrate=migrate)


def event_store_for(store: SagaStore) -> EventStore:
    """The choreography tables (routes, inbox, tracker) of an open saga store,
    on its connection: SQLite, PostgreSQL or in-memory."""
    from sagakit.adapters.store.memory import InMemoryStore  # noqa: PLC0415
    from sagakit.adapters.store.sqlite import SQLiteStore  # noqa: PLC0415

    if isinstance(store, SQLiteStore):
        from sagakit.adapters.store.event_sqlite import SQLiteEventStore  # noqa: PLC0415

        return SQLiteEventStore(store)
    if isinstance(store, InMemoryStore):
        from sagakit.adapters.store.event_memory import (  # noqa: PLC0415
            InMemoryEventStore,
        )

        return InMemoryEventStore(store)
    if type(store).__name__ == "PostgresStore":  # importing it needs asyncpg
        from sagakit.adapters.store.event_postgres import (  # noqa: PLC0415
            PostgresEventStore,
        )
        from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415

        if isinstance(store, PostgresStore):
            return PostgresEventStore(store)
    raise StoreError(f"{type(store).__name__} keeps no choreography tables")


async def open_event_store(url: str | None = None) -> EventStore:
    """Open (and migrate) the event store a URL names, like
    :func:`open_store_async`: SQLite, ``postgresql://`` or ``memory://``."""
    url = database_url(url)
    if url.startswith(("postgres://", "postgresql://")):
        from sagakit.adapters.store.event_postgres import (  # noqa: PLC0415
            PostgresEventStore,
        )

        return await PostgresEventStore.connect(url)
    if url == "memory://":
        from sagakit.adapters.store.event_memory import (  # noqa: PLC0415
            InMemoryEventStore,
        )

        return InMemoryEventStore()
    from sagakit.adapters.store.event_sqlite import SQLiteEventStore  # noqa: PLC0415
    from sagakit.adapters.store.sqlite import SQLiteStore  # noqa: PLC0415

    store = open_store(url)
    if not isinstance(store, SQLiteStore):  # pragma: no cover - open_store's kinds
        raise StoreError(f"{type(store).__name__} keeps no choreography tables")
    return SQLiteEventStore(store, owned=True)
