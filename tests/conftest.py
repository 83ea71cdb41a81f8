"""Shared fixtures: a fresh PostgreSQL database per test, cloned from a template.

The server comes from ``$SAGAKIT_TEST_POSTGRES_URL``. When it cannot be reached
the tests that need it are skipped, or fail when ``CI=true``. Admin statements
run on their own event loop in a helper thread, away from the test's loop.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_URL = os.environ.get(
    "SAGAKIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TEMPLATE = f"sagakit_template_{os.getpid()}"  # one per pytest run
T = TypeVar("T")


def database_url(name: str) -> str:
    """``POSTGRES_URL`` pointing at another database on the same server."""
    return urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def admin(*statements: str, url: str = POSTGRES_URL) -> None:
    import asyncpg  # noqa: PLC0415 - only the PostgreSQL tests need the driver

    conn = await asyncpg.connect(url, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated database that each test's database is cloned from."""
    try:
        from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415

        run_sync(admin("SELECT 1"))
    except Exception as exc:  # any failure means "no server here"
        reason = f"PostgreSQL unavailable at {POSTGRES_URL}: {exc}".splitlines()[0]
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)

    async def migrate() -> None:
        store = await PostgresStore.connect(database_url(TEMPLATE), max_size=1)
        await store.close()

    drop = f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"
    run_sync(admin(drop, f"CREATE DATABASE {TEMPLATE}"))
    run_sync(migrate())
    yield TEMPLATE
    run_sync(admin(drop))


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """URL of a fresh, migrated database of this test's own; dropped after."""
    name = f"sagakit_test_{uuid.uuid4().hex[:12]}"
    run_sync(admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}"))
    yield database_url(name)
    run_sync(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


# --- RabbitMQ ------------------------------------------------------------------

RABBITMQ_URL = os.environ.get(
    "SAGAKIT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"
)


async def delete_rabbitmq_queues(*names: str) -> None:
    """Delete the named queues; with no names, just check the server answers."""
    import aio_pika  # noqa: PLC0415 - only the RabbitMQ tests need the driver

    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """``RABBITMQ_URL`` once the server answers (skip, or fail when ``CI=true``)."""
    try:
        run_sync(delete_rabbitmq_queues())
    except Exception as exc:  # any failure means "no server here"
        where = urlsplit(RABBITMQ_URL).netloc.rpartition("@")[2]  # no password
        reason = f"RabbitMQ unavailable at {where}: {exc!r}".splitlines()[0]
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return RABBITMQ_URL


# --- Redis ---------------------------------------------------------------------

REDIS_URL = os.environ.get("SAGAKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def delete_redis_keys(pattern: str | None = None) -> None:
    """Delete the keys matching ``pattern``; with none, just check the server."""
    from redis.asyncio import Redis  # noqa: PLC0415 - only the Redis tests need it

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await client.ping()
        if pattern is not None:
            keys = [key async for key in client.scan_iter(match=pattern)]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """``REDIS_URL`` once the server answers (skip, or fail when ``CI=true``)."""
    try:
        run_sync(delete_redis_keys())
    except Exception as exc:  # any failure means "no server here"
        where = urlsplit(REDIS_URL).netloc.rpartition("@")[2]  # no password
        reason = f"Redis unavailable at {where}: {exc}".splitlines()[0]
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return REDIS_URL
