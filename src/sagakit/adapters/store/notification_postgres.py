"""Notifications for hooks in PostgreSQL, beside the saga tables (0016).

Composes the saga store's :class:`PostgresDatabase`; each method is one
statement, and claims skip rows another notifier has locked.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sagakit.adapters.store import notification_rows as nrows
from sagakit.adapters.store.postgres_database import OnPostgres, PostgresDatabase
from sagakit.ports.notification_store import (
    Notification,
    Unattended,
)


class PostgresNotificationStore(OnPostgres, nrows.NotificationReads[PostgresDatabase]):
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

    async def claim_notifications(
        self,
        owner: str,
        *,
        hold: float,
        limit: int = 50,
        saga_names: Collection[str] | None = None,
    ) -> list[Notification]:
        names = None if saga_names is None else sorted(saga_names)
        found = await self.database.fetch(
            "claiming notifications", "notification_claim", owner, hold, limit, names
        )
        return [nrows.notification(r) for r in found]

    async def notification_delivered(
        self, event_id: str, delivered_to: Collection[str]
    ) -> None:
        about = f"notification {event_id}: delivered"
        await self.database.fetch(
            about,
            "notification_delivered",
            event_id,
            nrows.hooks_json(delivered_to),
        )

    async def notification_failed(
        self,
        event_id: str,
        *,
        delivered_to: Collection[str],
        error: str,
        retry_in: float | None,
    ) -> None:
        about = f"notification {event_id}: failed"
        await self.database.fetch(
            about,
            "notification_failed",
            event_id,
            nrows.hooks_json(delivered_to),
            error,
            retry_in,
        )

    async def prune_notifications(self, before: float) -> int:
        found = await self.database.fetch(
            "pruning notifications", "notification_prune", before
        )
        return len(found)

    async def unattended(
        self,
        *,
        unchanged_since: float,
        saga_names: Collection[str] | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[Unattended]:
        names = None if saga_names is None else sorted(saga_names)
        found = await self.database.fetch(
            "finding unattended sagas",
            "unattended_sagas",
            unchanged_since,
            names,
            limit,
            after,
        )
        return [nrows.unattended(r) for r in found]
