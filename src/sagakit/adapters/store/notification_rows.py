"""Rows of ``sagakit_notification`` (and unattended sagas) as the
notification port's values, for both SQL dialects."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, Generic, TypeVar

from sagakit.adapters.store import rows
from sagakit.adapters.store.reads import Fetches
from sagakit.adapters.store.rows import Row
from sagakit.ports.notification_store import (
    Notification,
    NotificationStatus,
    Unattended,
)


def notification(row: Row) -> Notification:
    """``event_id, kind, saga_id, saga_name, version, detail, occurred_at,
    status, attempts, delivered_to, last_error, finished_at``."""
    return Notification(
        event_id=row[0],
        kind=row[1],
        saga_id=row[2],
        saga_name=row[3],
        version=row[4],
        detail=rows.loads_or_none(row[5]),
        occurred_at=row[6],
        status=NotificationStatus(row[7]),
        attempts=row[8],
        delivered_to=tuple(rows.loads_or_none(row[9]) or ()),
        last_error=row[10],
        finished_at=row[11],
    )


def claimed(found: Sequence[Row]) -> list[Notification]:
    """Claimed rows (their due time last), the earliest due first."""
    ordered = sorted(found, key=lambda r: (r[12], r[0]))
    return [notification(r) for r in ordered]


def unattended(row: Row) -> Unattended:
    """A saga row (as ``get_saga`` reads it), then its owner and whether its
    lease is live."""
    return Unattended(
        record=rows.saga_record(row), owner=row[13], lease_live=bool(row[14])
    )


def hooks_json(hooks: Collection[str]) -> str:
    return rows.dumps(sorted(hooks))


def names_json(names: Collection[str] | None) -> str | None:
    """Saga names as the SQLite queries take them (a JSON array)."""
    return None if names is None else json.dumps(sorted(names))


def added(notes: Sequence[Notification]) -> list[tuple[Any, ...]]:
    """``event_id, kind, saga_id, saga_name, version, detail, occurred_at``
    of each, the detail as JSON text."""
    return [
        (
            n.event_id,
            n.kind,
            n.saga_id,
            n.saga_name,
            n.version,
            rows.dumps_or_none(n.detail),
            n.occurred_at,
        )
        for n in notes
    ]


D = TypeVar("D", bound=Fetches)


class NotificationReads(Generic[D]):
    """The reads, written once for every dialect; a dialect says how its
    queries take saga names (:meth:`names`) and the time (:meth:`now`)."""

    database: D

    async def notifications(
        self, *, status: NotificationStatus | None = None, limit: int = 50
    ) -> list[Notification]:
        wanted = None if status is None else NotificationStatus(status).value
        found = await self.database.fetch(
            "listing notifications", "notification_list", wanted, limit
        )
        return [notification(r) for r in found]

    async def unattended(
        self,
        *,
        unchanged_since: float,
        saga_names: Collection[str] | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[Unattended]:
        found = await self.database.fetch(
            "finding unattended sagas",
            "unattended_sagas",
            unchanged_since,
            self.names(saga_names),
            limit,
            *self.now(),
            after,
        )
        return [unattended(r) for r in found]

    @staticmethod
    def names(saga_names: Collection[str] | None) -> Any:
        """Saga names as this dialect's queries take them."""
        return names_json(saga_names)

    @staticmethod
    def now() -> tuple[float, ...]:
        """The time, for a dialect whose queries take it (none: they read
        the database's clock)."""
        return ()


class OnServerNotifications(NotificationReads[D]):
    """What PostgreSQL and MySQL do alike, on the database's clock; a
    dialect says how a named write runs (:meth:`change`)."""

    async def change(self, about: str, query: str, *args: Any) -> Sequence[Row]:
        """Run the named write on its own (committed); the rows it returns."""
        return await self.database.fetch(about, query, *args)

    async def claim_notifications(
        self,
        owner: str,
        *,
        hold: float,
        limit: int = 50,
        saga_names: Collection[str] | None = None,
    ) -> list[Notification]:
        found = await self.change(
            "claiming notifications",
            "notification_claim",
            owner,
            hold,
            limit,
            self.names(saga_names),
        )
        return [notification(r) for r in found]  # in claim order

    async def notification_delivered(
        self, event_id: str, delivered_to: Collection[str]
    ) -> None:
        about = f"notification {event_id}: delivered"
        await self.change(
            about, "notification_delivered", event_id, hooks_json(delivered_to)
        )

    async def notification_failed(
        self,
        event_id: str,
        *,
        delivered_to: Collection[str],
        error: str,
        retry_in: float | None,
    ) -> None:
        hooks = hooks_json(delivered_to)
        about = f"notification {event_id}: failed"
        await self.change(
            about, "notification_failed", event_id, hooks, error, retry_in
        )
