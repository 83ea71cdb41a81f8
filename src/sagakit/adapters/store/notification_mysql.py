"""Notifications for hooks in MySQL/MariaDB, beside the saga tables (the
MySQL store's migration 0003, what SQLite's and PostgreSQL's 0016 add).

Composes the saga store's :class:`MySQLDatabase`; each method is one
transaction in one round trip, and claims skip rows another notifier has
locked. "Now" is the database clock, as for leases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagakit.adapters.store import notification_rows as nrows
from sagakit.adapters.store.mysql_database import MySQLDatabase, OnMySQL
from sagakit.adapters.store.rows import Row
from sagakit.ports.notification_store import Notification


class MySQLNotificationStore(OnMySQL, nrows.OnServerNotifications[MySQLDatabase]):
    """A :class:`~sagakit.ports.notification_store.NotificationStore` on an
    open :class:`MySQLDatabase` (or ``MySQLStore``)."""

    async def add_notifications(self, notifications: Sequence[Notification]) -> int:
        if not notifications:
            return 0
        steps = [("notification_add", row) for row in nrows.added(notifications)]
        found = await self.database.script("adding notifications", steps)
        return sum(int(rows[0][0]) for rows in found if rows)

    async def change(self, about: str, query: str, *args: Any) -> Sequence[Row]:
        """In a transaction of its own (a block of several statements)."""
        return await self.database.write(about, query, *args)

    async def prune_notifications(self, before: float) -> int:
        found = await self.change("pruning notifications", "notification_prune", before)
        return int(found[0][0]) if found else 0
