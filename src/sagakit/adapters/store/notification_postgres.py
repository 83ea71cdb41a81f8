"""Notifications for hooks in PostgreSQL, beside the saga tables (0016).

Composes the saga store's :class:`PostgresDatabase`; each method is one
statement, and claims skip rows another notifier has locked.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sagakit.adapters.store import notification_rows as nrows
from sagakit.adapters.store.postgres_database import OnPostgres, PostgresDatabase
from sagakit.ports.notification_store import Notification


class PostgresNotificationStore(
    OnPostgres, nrows.OnServerNotifications[PostgresDatabase]
):
    """A :class:`~sagakit.ports.notification_store.NotificationStore` on an
    open :class:`PostgresDatabase` (or ``PostgresStore``)."""

    async def add_notifications(self, notifications: Sequence[Notification]) -> int:
        if not notifications:
            return 0
        columns = list(zip(*nrows.added(notifications), strict=True))
        found = await self.database.fetch(
            "adding notifications", "notification_add", *map(list, columns)
        )
        return len(found)

    async def prune_notifications(self, before: float) -> int:
        found = await self.database.fetch(
            "pruning notifications", "notification_prune", before
        )
        return len(found)

    @staticmethod
    def names(saga_names: Collection[str] | None) -> Any:
        """A text array."""
        return None if saga_names is None else sorted(saga_names)
