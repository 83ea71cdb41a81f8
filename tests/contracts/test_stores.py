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


class OnMemory:
    """``store``: a fresh in-memory store."""

    @pytest.fixture
    def store(self) -> SagaStore:
        return InMemoryStore()


class OnSQLite:
    """``store`` and ``peer``: two handles on one fresh SQLite file."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> SagaStore:
        return SQLiteStore(tmp_path / "contract.db")

    @pytest.fixture
    def peer(self, store: SagaStore, tmp_path: Path) -> SagaStore:
        return SQLiteStore(tmp_path / "contract.db")


class OnPostgres:
    """``store`` and ``peer``: two pools on one fresh PostgreSQL database,
    so claims race for real."""

    @pytest.fixture
    async def store(self, pg_url: str) -> AsyncIterator[SagaStore]:
        postgres = pytest.importorskip("sagakit.adapters.store.postgres")
        store = await postgres.PostgresStore.connect(pg_url, migrate=False)
        yield store
        await store.close()

    @pytest.fixture
    async def peer(self, store: SagaStore, pg_url: str) -> AsyncIterator[SagaStore]:
        postgres = pytest.importorskip("sagakit.adapters.store.postgres")
        peer = await postgres.PostgresStore.connect(pg_url, migrate=False)
        yield peer
        await peer.close()


class OnMySQL:
    """``store`` and ``peer``: two pools on one fresh MySQL database, so
    claims race for real."""

    @pytest.fixture
    async def store(self, mysql_url: str) -> AsyncIterator[SagaStore]:
        mysql = pytest.importorskip("sagakit.adapters.store.mysql")
        store = await mysql.MySQLStore.connect(mysql_url, migrate=False)
        yield store
        await store.close()

    @pytest.fixture
    async def peer(self, store: SagaStore, mysql_url: str) -> AsyncIterator[SagaStore]:
        mysql = pytest.importorskip("sagakit.adapters.store.mysql")
        peer = await mysql.MySQLStore.connect(mysql_url, migrate=False)
        yield peer
        await peer.close()


class TestInMemoryStore(OnMemory, StoreContract):
    pass


class TestSQLiteStore(OnSQLite, StoreContract, GroupSavesContract):
    pass


@pytest.mark.postgres
class TestPostgresStore(OnPostgres, StoreContract, GroupSavesContract):
    pass


@pytest.mark.mysql
class TestMySQLStore(OnMySQL, StoreContract, GroupSavesContract):
    pass
