"""What the three services share: configuration, their database, start-up.

Each service owns a PostgreSQL schema (``booking``, ``billing``, ``parking``)
in one database, a stand-in for a database per service, and creates it on
start. sagakit's tables (routes, inbox, tracker, event outbox) live in the
same database, so a handler can commit its business write and its inbox
entry together, and an HTTP endpoint its business write and the event it
stages (``bus.publish_on``). Each service's bus publishes what it staged.

Each service's lifespan is ``sagakit_lifespan``
(``sagakit.integrations.fastapi``): it opens the store and the broker,
starts the bus and stops it on shutdown; the service's own setup (logging,
its schema and pool) runs inside it, ready before the bus consumes.

Environment:

- ``SAGAKIT_DATABASE_URL``: ``postgresql://...`` (required)
- ``SAGAKIT_TRANSPORT_URL``: ``amqp://...`` (required)
- ``PARKING_QUEUE_PREFIX``: keeps several copies apart on one broker
- ``PARKING_TIMEOUT``: seconds without progress before a booking is stalled
- ``PARKING_WATCH``: seconds between stalled checks (booking service; 5)
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from examples.parking.events import parking_booking
from sagakit.choreography import EventBus
from sagakit.cli.main import configure_logging
from sagakit.integrations.fastapi import sagakit_lifespan

DATABASE_ENV = "SAGAKIT_DATABASE_URL"
TRANSPORT_ENV = "SAGAKIT_TRANSPORT_URL"
PREFIX_ENV = "PARKING_QUEUE_PREFIX"
WATCH_ENV = "PARKING_WATCH"

logger = logging.getLogger(__name__)


def _required(name: str, scheme: tuple[str, ...]) -> str:
    value = os.environ.get(name, "")
    if not value.startswith(scheme):
        raise RuntimeError(f"the parking example needs ${name}={scheme[0]}//...")
    return value


def event_bus(service: str, publishes: dict[str, type[BaseModel]]) -> EventBus:
    """The service's bus, on its own queue (under ``$PARKING_QUEUE_PREFIX``),
    publishing the events ``publishes`` maps to their payload models."""
    prefix = os.environ.get(PREFIX_ENV, "")
    return EventBus(
        service,
        queue=f"{prefix}events.{service}",
        choreographies=[parking_booking],
        publishes=publishes,
    )


class Database:
    """A service's schema, created on start, and its connection pool."""

    def __init__(self, schema: str, ddl: str) -> None:
        self.schema = schema
        self._ddl = f"CREATE SCHEMA IF NOT EXISTS {schema};\n{ddl}"
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"the {self.schema} database is not open")
        return self._pool

    async def open(self, url: str) -> None:
        self._pool = await asyncpg.create_pool(url, min_size=1, max_size=5)
        async with self._pool.acquire() as conn, conn.transaction():
            # services starting together must not race on CREATE
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", self.schema
            )
            await conn.execute(self._ddl)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def service_app(
    bus: EventBus, db: Database, *, watch: bool = False, **fastapi: Any
) -> FastAPI:
    """A FastAPI app whose lifespan is sagakit's (``sagakit_lifespan``): it
    opens the store and the broker and starts the bus (with the stalled
    check if ``watch``); the service's own lifespan, inside it, sets up
    logging and the service's schema and pool before the bus consumes."""

    @asynccontextmanager
    async def service(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(os.environ.get("PARKING_LOG_LEVEL", "INFO"))
        await db.open(os.environ[DATABASE_ENV])
        logger.info(
            "service starting",
            extra={
                "service": bus.service,
                "queue": bus.queue,
                "events": bus.event_types,
            },
        )
        try:
            yield
        finally:
            await db.close()

    sagakit = sagakit_lifespan(
        None,  # $SAGAKIT_DATABASE_URL, and the broker: $SAGAKIT_TRANSPORT_URL
        run=None,  # no orchestrated saga here: the bus does the work
        migrate=True,
        bus=bus,
        watch=float(os.environ.get(WATCH_ENV) or 5) if watch else None,
        lifespan=service,
    )

    def lifespan(app: FastAPI) -> AbstractAsyncContextManager[dict[str, Any]]:
        _required(DATABASE_ENV, ("postgresql:", "postgres:"))  # before any opens
        _required(TRANSPORT_ENV, ("amqp",))
        return sagakit(app)

    app = FastAPI(lifespan=lifespan, **fastapi)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"service": bus.service, "status": "ok"}

    return app


def found(record: asyncpg.Record | None, what: str) -> dict[str, Any]:
    """A record as a dict, or HTTP 404 naming ``what``."""
    if record is None:
        raise HTTPException(status_code=404, detail=f"{what} not found")
    return dict(record)
