"""The event store contract against every adapter (PostgreSQL when reachable)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sagakit.adapters.store import event_store_for, open_event_store
from sagakit.adapters.store.event_memory import InMemoryEventStore
from sagakit.adapters.store.event_sqlite import SQLiteEventStore
from sagakit.ports.event_store import EventStore
from tests.contracts.event_store_contract import EventStoreContract


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> EventStore:
        return InMemoryEventStore()


class TestSQLiteEventStore(EventStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[EventStore]:
        store = SQLiteEventStore(tmp_path / "contract.db")
        yield store
        await store.close()


@pytest.mark.postgres
class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    async def store(self, pg_url: str) -> AsyncIterator[EventStore]:
        store = await open_event_store(pg_url)
        yield store
        await store.close()


async def test_event_store_for_shares_the_saga_store(tmp_path: Path) -> None:
    saga_store = SQLiteEventStore(tmp_path / "a.db")._db
    events = event_store_for(saga_store)
    assert await events.record_inbox("svc", "m1", None)
    assert await saga_store.inbox_reply("svc", "m1") == b""
    await events.close()  # not its connection: still open
    assert await saga_store.inbox_reply("svc", "m1") == b""
    await saga_store.close()
