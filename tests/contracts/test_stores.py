"""The store contract against every adapter (PostgreSQL and MySQL when they
are reachable)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.store.sqlite import SQLiteStore
from sagakit.ports.store import SagaStore
from sagakit.testing.contracts.store import StoreContract
from sagakit.testing.contracts.store_batches import GroupSavesContract


class TestInMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> SagaStore:
        return InMemoryStore()


class TestSQLiteStore(StoreContract, GroupSavesContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> SagaStore:
        return SQLiteStore(tmp_path / "contract.db")

    @pytest.fixture
    def peer(self, store: SagaStore, tmp_path: Path) -> SagaStore:
        return SQLiteStore(tmp_path / "contract.db")


@pytest.mark.postgres
class TestPostgresStore(StoreContract, GroupSavesContract):
    @pytest.fixture
    async def store(self, pg_url: str) -> AsyncIterator[SagaStore]:
        postgres = pytest.importorskip("sagakit.adapters.store.postgres")
        store = await postgres.PostgresStore.connect(pg_url, migrate=False)
        yield store
        await store.close()

    @pytest.fixture
    async def peer(self, store: SagaStore, pg_url: str) -> AsyncIterator[SagaStore]:
        """Another pool on the same database: claims race for real."""
        postgres = pytest.importorskip("sagakit.adapters.store.postgres")
        peer = await postgres.PostgresStore.connect(pg_url, migrate=False)
        yield peer
        await peer.close()


@pytest.mark.mysql
class TestMySQLStore(StoreContract, GroupSavesContract):
    @pytest.fixture
    async def store(self, mysql_url: str) -> AsyncIterator[SagaStore]:
        mysql = pytest.importorskip("sagakit.adapters.store.mysql")
        store = await mysql.MySQLStore.connect(mysql_url, migrate=False)
        yield store
        await store.close()

    @pytest.fixture
    async def peer(self, store: SagaStore, mysql_url: str) -> AsyncIterator[SagaStore]:
        """Another pool on the same database: claims race for real."""
        mysql = pytest.importorskip("sagakit.adapters.store.mysql")
        peer = await mysql.MySQLStore.connect(mysql_url, migrate=False)
        yield peer
        await peer.close()
