"""Notifications for hooks in this process, beside an
:class:`~sagakit.adapters.store.memory.InMemoryStore` (tests, examples).

The store's :class:`NotificationLedger` is told of every instance it writes,
as the SQL stores' triggers are, so a saga that ends badly has its
notification in the same (in-memory) commit.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sagakit.engine.state import SagaStatus
from sagakit.ports.notification_store import (
    Notification,
    NotificationStatus,
    Unattended,
)

if TYPE_CHECKING:
    from sagakit.adapters.store.memory import InMemoryStore
    from sagakit.ports.store import SagaRecord

ENDED_BADLY = (SagaStatus.FAILED, SagaStatus.COMPENSATION_FAILED)


@dataclass
class NotificationLedger:
    """The notification rows: each with when it is due, and its hold."""

    rows: dict[str, Notification] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)
    held: dict[str, tuple[str, float]] = field(default_factory=dict)

    def written(self, before: SagaRecord | None, after: SagaRecord) -> None:
        """What the SQL triggers do when an instance is written."""
        if after.status not in ENDED_BADLY:
            return
        if before is not None and before.status is after.status:
            return
        kind = f"saga.{after.status.value}"
        self.add(
            Notification(
                event_id=f"{kind}:{after.saga_id}:{after.version}",
                kind=kind,
                saga_id=after.saga_id,
                saga_name=after.saga_name,
                version=after.version,
                occurred_at=after.updated_at,
            ),
            due=after.updated_at,
        )

    def add(self, note: Notification, *, due: float) -> bool:
        if note.event_id in self.rows:
            return False
        self.rows[note.event_id] = replace(note, status=NotificationStatus.PENDING)
        self.due[note.event_id] = due
        return True

    def finish(self, event_id: str, note: Notification, due: float | None) -> None:
        self.rows[event_id] = note
        self.held.pop(event_id, None)
        if due is not None:
            self.due[event_id] = due


class InMemoryNotificationStore:
    """A :class:`~sagakit.ports.notification_store.NotificationStore` over an
    :class:`InMemoryStore` (its ledger, and its port methods for the sagas)."""

    def __init__(self, store: InMemoryStore) -> None:
        self.store = store
        self.ledger = store.notifications

    async def add_notifications(self, notifications: Sequence[Notification]) -> int:
        now = time.time()
        return sum(self.ledger.add(n, due=now) for n in notifications)

    async def claim_notifications(
        self,
        owner: str,
        *,
        hold: float,
        limit: int = 50,
        saga_names: Collection[str] | None = None,
    ) -> list[Notification]:
        now = time.time()
        ledger = self.ledger
        due = sorted(
            (ledger.due[event_id], event_id)
            for event_id, note in ledger.rows.items()
            if note.status is NotificationStatus.PENDING
            and ledger.due[event_id] <= now
            and ledger.held.get(event_id, ("", -1.0))[1] < now
            and (saga_names is None or note.saga_name in saga_names)
        )
        taken = [event_id for _, event_id in due[:limit]]
        for event_id in taken:
            ledger.held[event_id] = (owner, now + hold)
        return [ledger.rows[event_id] for event_id in taken]

    async def notification_delivered(
        self, event_id: str, delivered_to: Collection[str]
    ) -> None:
        note = self.ledger.rows[event_id]
        done = replace(
            note,
            status=NotificationStatus.DELIVERED,
            attempts=note.attempts + 1,
            delivered_to=tuple(sorted(delivered_to)),
            last_error=None,
            finished_at=time.time(),
        )
        self.ledger.finish(event_id, done, None)

    async def notification_failed(
        self,
        event_id: str,
        *,
        delivered_to: Collection[str],
        error: str,
        retry_in: float | None,
    ) -> None:
        now = time.time()
        note = self.ledger.rows[event_id]
        failed = replace(
            note,
            status=(
                NotificationStatus.DROPPED
                if retry_in is None
                else NotificationStatus.PENDING
            ),
            attempts=note.attempts + 1,
            delivered_to=tuple(sorted(delivered_to)),
            last_error=error,
            finished_at=now if retry_in is None else None,
        )
        self.ledger.finish(
            event_id, failed, None if retry_in is None else now + retry_in
        )

    async def notifications(
        self, *, status: NotificationStatus | None = None, limit: int = 50
    ) -> list[Notification]:
        found = [
            n
            for n in self.ledger.rows.values()
            if status is None or n.status is NotificationStatus(status)
        ]
        found.sort(key=lambda n: (n.occurred_at, n.event_id), reverse=True)
        return found[:limit]

    async def prune_notifications(self, before: float) -> int:
        old = [e for e, n in self.ledger.rows.items() if n.occurred_at < before]
        for event_id in old:
            del self.ledger.rows[event_id]
            self.ledger.due.pop(event_id, None)
            self.ledger.held.pop(event_id, None)
        return len(old)

    async def unattended(
        self,
        *,
        unchanged_since: float,
        saga_names: Collection[str] | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[Unattended]:
        ids = await self.store.unfinished(saga_names, limit=1_000_000, after=after)
        leases = await self.store.leases(ids)
        found = []
        for saga_id in ids:
            record = await self.store.get(saga_id)
            lease = leases.get(saga_id)
            live = lease is not None and lease.live
            owner = None if lease is None else lease.owner
            idle = owner is None or not live
            if record.updated_at >= unchanged_since:
                continue
            if idle or record.waiting is not None or record.state.paused:
                found.append(Unattended(record=record, owner=owner, lease_live=live))
            if len(found) == limit:
                break
        return found
