"""The workflow store contract against every adapter (PostgreSQL when reachable)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sagakit.adapters.store.workflow_memory import InMemoryWorkflowStore
from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.ports.workflow_store import WorkflowStore
from tests.contracts.workflow_store_contract import WorkflowStoreContract


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
