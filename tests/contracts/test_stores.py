"""The store contract against every adapter that runs everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.store.sqlite import SQLiteStore
from sagakit.ports.store import SagaStore
from tests.contracts.store_contract import StoreContract


class TestInMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> SagaStore:
        return InMemoryStore()


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> SagaStore:
        return SQLiteStore(tmp_path / "contract.db")
