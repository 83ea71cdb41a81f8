"""Notifications for hooks in SQLite, beside the saga tables (0016).

Composes the saga store's :class:`SQLiteDatabase`; writes run inside
``BEGIN IMMEDIATE``, so one notification is claimed by one notifier at a
time, in this process or another sharing the file.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

from sagakit.adapters.store import notification_rows as nrows
from sagakit.adapters.store.sqlite_database import OnSQLite, SQLiteDatabase
from sagakit.ports.notification_store import Notification


class SQLiteNotificationStore(OnSQLite, nrows.NotificationReads[SQLiteDatabase]):
    """A :class:`~sagakit.ports.notification_store.NotificationStore` on an
    open :class:`SQLiteDatabase` (or ``SQLiteStore``), or a path."""

    async def add_notifications(self, notifications: Sequence[Notification]) -> int:
        now = time.time()
        new = 0
        with self.database.transaction("adding notifications"):
            for row in nrows.added(notifications):
                cur = self.database.execute("notification_add", (*row, now))
                new += len(cur.fetchall())
        return new

    async def claim_notifications(
        self,
        owner: str,
        *,
        hold: float,
        limit: int = 50,
        saga_names: Collection[str] | None = None,
    ) -> list[Notification]:
        args = (owner, time.time(), hold, limit, nrows.names_json(saga_names))
        with self.database.transaction("claiming notifications"):
            found = self.database.execute("notification_claim", args).fetchall()
        return nrows.claimed(found)

    async def notification_delivered(
        self, event_id: str, delivered_to: Collection[str]
    ) -> None:
        args = (event_id, nrows.hooks_json(delivered_to), time.time())
        with self.database.transaction(f"notification {event_id}: delivered"):
            self.database.execute("notification_delivered", args)

    async def notification_failed(
        self,
        event_id: str,
        *,
        delivered_to: Collection[str],
        error: str,
        retry_in: float | None,
    ) -> None:
        hooks = nrows.hooks_json(delivered_to)
        args = (event_id, hooks, error, retry_in, time.time())
        with self.database.transaction(f"notification {event_id}: failed"):
            self.database.execute("notification_failed", args)

    async def prune_notifications(self, before: float) -> int:
        with self.database.transaction("pruning notifications"):
            return len(
                self.database.execute("notification_prune", (before,)).fetchall()
            )

    @staticmethod
    def now() -> tuple[float, ...]:
        """Leases expire by ``time.time()``, as SQLite stores write them."""
        return (time.time(),)
