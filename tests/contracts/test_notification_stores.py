"""The notification store contract against every saga store adapter."""

from __future__ import annotations

import pytest

from sagakit.testing.contracts.notification_store import NotificationStoreContract
from tests.contracts.test_stores import OnMemory, OnMySQL, OnPostgres, OnSQLite


class TestInMemoryNotifications(OnMemory, NotificationStoreContract):
    pass


class TestSQLiteNotifications(OnSQLite, NotificationStoreContract):
    pass


@pytest.mark.postgres
class TestPostgresNotifications(OnPostgres, NotificationStoreContract):
    pass


@pytest.mark.mysql
class TestMySQLNotifications(OnMySQL, NotificationStoreContract):
    pass
