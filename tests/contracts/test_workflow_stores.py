"""The workflow store contract against every adapter (PostgreSQL when reachable),
and what only SQL stores promise: the history refuses UPDATE and DELETE."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sagakit.adapters.store.sqlite import SQLiteStore
from sagakit.adapters.store.workflow_memory import InMemoryWorkflowStore
from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.ports.workflow_store import WorkflowStore
from sagakit.testing.contracts.workflow_store import (
    APP,
    WorkflowStoreContract,
    line,
    make,
)
from tests.conftest import mysql_admin

FORGERIES = (
    "UPDATE sagakit_workflow_history SET outcome = 'forged'",
    "DELETE FROM sagakit_workflow_history",
)


class TestInMemoryWorkflowStore(WorkflowStoreContract):
    @pytest.fixture
    def store(self) -> WorkflowStore:
        return InMemoryWorkflowStore()


class TestSQLiteWorkflowStore(WorkflowStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> WorkflowStore:
        return SQLiteWorkflowStore(tmp_path / "contract.db")

    @pytest.fixture
    def peer(self, store: WorkflowStore, tmp_path: Path) -> WorkflowStore:
        return SQLiteWorkflowStore(tmp_path / "contract.db")

    @pytest.mark.parametrize("forgery", FORGERIES)
    async def test_history_is_append_only(self, tmp_path: Path, forgery: str) -> None:
        store = SQLiteWorkflowStore(tmp_path / "h.db")
        await store.create(make("w1"), [line("w1", "started")])
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store.database.conn.execute(forgery)
        assert [h.outcome for h in await store.history(APP, "w1")] == ["started"]

    async def test_shares_an_open_store_and_leaves_it_open(
        self, tmp_path: Path
    ) -> None:
        db = SQLiteStore(tmp_path / "shared.db")
        store = SQLiteWorkflowStore(db)
        await store.create(make("w1"), [])
        await store.close()
        assert await SQLiteWorkflowStore(db).get(APP, "w1") == make("w1")
        await db.close()


@pytest.mark.postgres
class TestPostgresWorkflowStore(WorkflowStoreContract):
    @pytest.fixture
    async def store(self, pg_url: str) -> AsyncIterator[WorkflowStore]:
        module = pytest.importorskip("sagakit.adapters.store.workflow_postgres")
        store = await module.PostgresWorkflowStore.connect(pg_url, migrate=False)
        yield store
        await store.close()

    @pytest.fixture
    async def peer(
        self, store: WorkflowStore, pg_url: str
    ) -> AsyncIterator[WorkflowStore]:
        """Another pool on the same database: claims race for real."""
        module = pytest.importorskip("sagakit.adapters.store.workflow_postgres")
        peer = await module.PostgresWorkflowStore.connect(pg_url, migrate=False)
        yield peer
        await peer.close()

    @pytest.mark.parametrize("forgery", FORGERIES)
    async def test_history_is_append_only(
        self, store: WorkflowStore, pg_url: str, forgery: str
    ) -> None:
        asyncpg = pytest.importorskip("asyncpg")
        await store.create(make("w1"), [line("w1", "started")])
        conn = await asyncpg.connect(pg_url)
        try:
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(forgery)
        finally:
            await conn.close()
        assert [h.outcome for h in await store.history(APP, "w1")] == ["started"]

    async def test_shares_an_open_store_and_leaves_it_open(self, pg_url: str) -> None:
        from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415
        from sagakit.adapters.store.workflow_postgres import (  # noqa: PLC0415
            PostgresWorkflowStore,
        )

        db = await PostgresStore.connect(pg_url, migrate=False)
        try:
            store = PostgresWorkflowStore.on(db)
            await store.create(make("w1"), [])
            await store.close()
            again = PostgresWorkflowStore.on(db)
            assert await again.get(APP, "w1") == make("w1")
        finally:
            await db.close()


@pytest.mark.mysql
class TestMySQLWorkflowStore(WorkflowStoreContract):
    @pytest.fixture
    async def store(self, mysql_url: str) -> AsyncIterator[WorkflowStore]:
        module = pytest.importorskip("sagakit.adapters.store.workflow_mysql")
        store = await module.MySQLWorkflowStore.connect(mysql_url, migrate=False)
        yield store
        await store.close()

    @pytest.fixture
    async def peer(
        self, store: WorkflowStore, mysql_url: str
    ) -> AsyncIterator[WorkflowStore]:
        """Another pool on the same database: claims race for real."""
        module = pytest.importorskip("sagakit.adapters.store.workflow_mysql")
        peer = await module.MySQLWorkflowStore.connect(mysql_url, migrate=False)
        yield peer
        await peer.close()

    @pytest.mark.parametrize("forgery", FORGERIES)
    async def test_history_is_append_only(
        self, store: WorkflowStore, mysql_url: str, forgery: str
    ) -> None:
        asyncmy = pytest.importorskip("asyncmy")
        await store.create(make("w1"), [line("w1", "started")])
        with pytest.raises(asyncmy.errors.OperationalError, match="append-only"):
            await mysql_admin(forgery, url=mysql_url)
        assert [h.outcome for h in await store.history(APP, "w1")] == ["started"]

    async def test_shares_an_open_store_and_leaves_it_open(
        self, mysql_url: str
    ) -> None:
        from sagakit.adapters.store.mysql import MySQLStore  # noqa: PLC0415
        from sagakit.adapters.store.workflow_mysql import (  # noqa: PLC0415
            MySQLWorkflowStore,
        )

        db = await MySQLStore.connect(mysql_url, migrate=False)
        try:
            store = MySQLWorkflowStore.on(db)
            await store.create(make("w1"), [])
            await store.close()
            again = MySQLWorkflowStore.on(db)
            assert await again.get(APP, "w1") == make("w1")
        finally:
            await db.close()
