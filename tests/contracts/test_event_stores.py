"""The event store contract against every adapter (PostgreSQL and MySQL when
reachable)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sagakit.adapters.store import event_store_for, open_event_store
from sagakit.adapters.store.event_memory import InMemoryEventStore
from sagakit.adapters.store.event_sqlite import SQLiteEventStore
from sagakit.adapters.store.sqlite import SQLiteStore
from sagakit.ports.event_store import EventStore, StagedEvent
from sagakit.testing.contracts.event_store import (
    EventStoreContract,
    Staging,
    transaction,
)


class MemoryStaging(Staging):
    transactional = False

    async def commit(self, *events: StagedEvent) -> list[bool]:
        return [await self.outbox.stage_event_on(None, e) for e in events]


class SQLiteStaging(Staging):
    """A connection of the test's own to the store's file."""

    def __init__(self, store: EventStore, path: Path) -> None:
        super().__init__(store)
        self.db = sqlite3.connect(path, isolation_level=None)

    async def _stage(self, events: tuple[StagedEvent, ...], fail: bool) -> list[bool]:
        with transaction(self.db):
            done = [await self.outbox.stage_event_on(self.db, e) for e in events]
            if fail:
                raise RuntimeError("roll back")
        return done

    async def commit(self, *events: StagedEvent) -> list[bool]:
        return await self._stage(events, False)

    async def roll_back(self, *events: StagedEvent) -> None:
        await self._stage(events, True)


class PostgresStaging(Staging):
    """An asyncpg connection of the test's own to the store's database."""

    def __init__(self, store: EventStore, url: str) -> None:
        super().__init__(store)
        self.url = url

    async def _stage(self, events: tuple[StagedEvent, ...], fail: bool) -> list[bool]:
        import asyncpg  # noqa: PLC0415 - only the PostgreSQL tests need the driver

        conn = await asyncpg.connect(self.url)
        try:
            async with conn.transaction():
                done = [await self.outbox.stage_event_on(conn, e) for e in events]
                if fail:
                    raise RuntimeError("roll back")
        finally:
            await conn.close()
        return done

    async def commit(self, *events: StagedEvent) -> list[bool]:
        return await self._stage(events, False)

    async def roll_back(self, *events: StagedEvent) -> None:
        await self._stage(events, True)

    def wrong_connection(self) -> sqlite3.Connection:
        return sqlite3.connect(":memory:")


@contextlib.asynccontextmanager
async def mysql_transaction(conn: Any) -> AsyncIterator[None]:
    """A transaction on a caller's own asyncmy connection."""
    await conn.begin()
    try:
        yield
    except BaseException:
        await conn.rollback()
        raise
    await conn.commit()


class MySQLStaging(Staging):
    """An asyncmy connection of the test's own to the store's database."""

    def __init__(self, store: EventStore, url: str) -> None:
        super().__init__(store)
        self.url = url

    async def _stage(self, events: tuple[StagedEvent, ...], fail: bool) -> list[bool]:
        import asyncmy  # noqa: PLC0415 - only the MySQL tests need the driver

        from sagakit.adapters.store.mysql_database import options  # noqa: PLC0415

        conn = await asyncmy.connect(**options(self.url), autocommit=True)
        try:
            async with mysql_transaction(conn):
                done = [await self.outbox.stage_event_on(conn, e) for e in events]
                if fail:
                    raise RuntimeError("roll back")
        finally:
            conn.close()
        return done

    async def commit(self, *events: StagedEvent) -> list[bool]:
        return await self._stage(events, False)

    async def roll_back(self, *events: StagedEvent) -> None:
        await self._stage(events, True)

    def wrong_connection(self) -> sqlite3.Connection:
        return sqlite3.connect(":memory:")


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> EventStore:
        return InMemoryEventStore()

    @pytest.fixture
    def staging(self, store: EventStore) -> Staging:
        return MemoryStaging(store)


class TestSQLiteEventStore(EventStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[EventStore]:
        store = SQLiteEventStore(tmp_path / "contract.db")
        yield store
        await store.close()

    @pytest.fixture
    def staging(self, store: EventStore, tmp_path: Path) -> Iterator[Staging]:
        staging = SQLiteStaging(store, tmp_path / "contract.db")
        yield staging
        staging.db.close()


@pytest.mark.postgres
class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    async def store(self, pg_url: str) -> AsyncIterator[EventStore]:
        store = await open_event_store(pg_url)
        yield store
        await store.close()

    @pytest.fixture
    def staging(self, store: EventStore, pg_url: str) -> Staging:
        return PostgresStaging(store, pg_url)


async def test_event_store_for_shares_the_saga_store(tmp_path: Path) -> None:
    saga_store = SQLiteStore(tmp_path / "a.db")
    events = event_store_for(saga_store)
    assert await events.record_inbox("svc", "m1", None)
    assert await saga_store.inbox_reply("svc", "m1") == b""
    await events.close()  # not its connection: still open
    assert await saga_store.inbox_reply("svc", "m1") == b""
    await saga_store.close()


@pytest.mark.mysql
class TestMySQLEventStore(EventStoreContract):
    @pytest.fixture
    async def store(self, mysql_url: str) -> AsyncIterator[EventStore]:
        store = await open_event_store(mysql_url)
        yield store
        await store.close()

    @pytest.fixture
    def staging(self, store: EventStore, mysql_url: str) -> Staging:
        return MySQLStaging(store, mysql_url)
