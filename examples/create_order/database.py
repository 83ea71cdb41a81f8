"""What the services share about PostgreSQL: where it is, and the effects table.

Each service owns a schema of its own (``orders``, ``consumers``, ``kitchen``,
``accounting``) in one database, created on first use. Every change a service
makes to its business tables is recorded, in the same transaction, as a row of
its ``effects`` table ``(service, saga_id, action)``; the tests count them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

DATABASE_ENV = "SAGAKIT_DATABASE_URL"
"""The database every service uses (the ``sagakit`` CLI reads it too)."""

EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.effects (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service   text NOT NULL,
    saga_id   text NOT NULL,
    action    text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
"""


def database_url() -> str:
    url = os.environ.get(DATABASE_ENV, "")
    if not url.startswith(("postgres://", "postgresql://")):
        raise RuntimeError(
            f"the create_order example needs ${DATABASE_ENV}=postgresql://..."
        )
    return url


class ServiceDatabase:
    """One service's schema: created on first use, then one connection per
    transaction (plenty for an example; a real service would keep a pool)."""

    def __init__(self, service: str, schema: str, ddl: str) -> None:
        self.service = service
        self.schema = schema
        self._ddl = f"CREATE SCHEMA IF NOT EXISTS {schema};\n{ddl}\n" + (
            EFFECTS_DDL.format(schema=schema)
        )
        self._ready = False

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(database_url(), timeout=10)
        try:
            if not self._ready:
                async with conn.transaction():
                    # processes starting together must not race on CREATE
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext($1))", self.schema
                    )
                    await conn.execute(self._ddl)
                self._ready = True
            async with conn.transaction():
                yield conn
        finally:
            await conn.close()

    async def record(
        self, conn: asyncpg.Connection, saga_id: str | None, action: str
    ) -> None:
        """Record one effect inside the caller's transaction."""
        await conn.execute(
            f"INSERT INTO {self.schema}.effects (service, saga_id, action) "  # noqa: S608 - fixed schema name
            "VALUES ($1, $2, $3)",
            self.service,
            saga_id or "",
            action,
        )


def queue_prefix() -> str:
    """``$CREATE_ORDER_QUEUE_PREFIX``: keeps parallel runs on one broker apart."""
    return os.environ.get("CREATE_ORDER_QUEUE_PREFIX", "")
