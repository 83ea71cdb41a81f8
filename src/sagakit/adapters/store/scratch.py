"""Throw-away PostgreSQL databases, one per test (the pytest plugin's
``sagakit_postgres_url``): made on a server the caller names, migrated, and
dropped, with every connection to it, when the test is over.

::

    async with scratch_database("postgresql://postgres@127.0.0.1/test") as url:
        store = await PostgresStore.connect(url)
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

from sagakit._extras import needs_extra
from sagakit.adapters.store.sql import queries
from sagakit.errors import StoreError

PREFIX = "sagakit_test_"
_CONNECT_TIMEOUT = 10.0


def database_at(url: str, name: str) -> str:
    """``url`` naming database ``name`` on the same server."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _on_server(url: str, query: str, name: str) -> None:
    with needs_extra("a PostgreSQL test database", "postgres"):
        import asyncpg  # noqa: PLC0415 - only this adapter needs the driver

        from sagakit.adapters.store.postgres_database import (  # noqa: PLC0415
            describe,  # the driver's module: loads with it
        )

    try:
        conn = await asyncpg.connect(url, timeout=_CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise StoreError(f"PostgreSQL at {describe(url)}: {exc}") from exc
    try:
        statement = await conn.fetchval(queries("postgres")[query], name)
        await conn.execute(statement)
    except asyncpg.PostgresError as exc:
        raise StoreError(f"{query} {name}: {exc}") from exc
    finally:
        await conn.close()


async def create_database(url: str, prefix: str = PREFIX) -> str:
    """Make a new, empty database named ``prefix`` and random hex on the
    server of ``url`` (whose user must be allowed to create databases);
    its URL."""
    name = f"{prefix}{secrets.token_hex(6)}"
    await _on_server(url, "create_database", name)
    return database_at(url, name)


async def drop_database(url: str, server: str | None = None) -> None:
    """Drop the database ``url`` names, even if connections to it are open,
    from ``server`` (a URL of another database on the same server; by
    default its ``postgres`` database)."""
    name = urlsplit(url).path.lstrip("/")
    await _on_server(server or database_at(url, "postgres"), "drop_database", name)


@contextlib.asynccontextmanager
async def scratch_database(url: str, prefix: str = PREFIX) -> AsyncIterator[str]:
    """The URL of a new, empty database on the server of ``url``; dropped on
    exit, even if connections to it are still open."""
    made = await create_database(url, prefix)
    try:
        yield made
    finally:
        await drop_database(made, url)
