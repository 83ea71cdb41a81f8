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
    """The listing, written once for both dialects."""

    database: D

    async def notifications(
        self, *, status: NotificationStatus | None = None, limit: int = 50
    ) -> list[Notification]:
        wanted = None if status is None else NotificationStatus(status).value
        found = await self.database.fetch(
            "listing notifications", "notification_list", wanted, limit
        )
        return [notification(r) for r in found]
