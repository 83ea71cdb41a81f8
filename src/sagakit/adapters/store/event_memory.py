"""Choreography routes, inbox, tracker and event outbox kept in this process:
tests, examples.

Share one instance between the event buses of a process (each service's bus
reads the routes the others registered). Honours the same contract as the
durable stores but loses everything when the process ends.

It has no transactions: :meth:`InMemoryEventStore.stage_event_on` takes
``conn=None`` and stages the event at once, so ``bus.publish_on(None, ...)``
runs the outbox path (claim, publish, forget) in tests without a database.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

from sagakit.adapters.store.memory import InMemoryStore
from sagakit.errors import StoreError
from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventOutcome,
    EventRecord,
    LiveChoreographies,
    Progress,
    StagedEvent,
    TrackedChoreography,
)

_ACTIVE = (ChoreographyStatus.IN_PROGRESS, ChoreographyStatus.COMPENSATING)


@dataclass(slots=True)
class _Held:
    event: StagedEvent
    locked_by: str | None = None
    locked_until: float | None = None


class InMemoryEventStore:
    """An :class:`~sagakit.ports.event_store.EventStore` in dictionaries.

    Its inbox is the wrapped :class:`InMemoryStore`'s (a new one by default).
    """

    def __init__(self, store: InMemoryStore | None = None) -> None:
        self._store = store or InMemoryStore()
        self._routes: dict[tuple[str, str], str] = {}  # (event type, service) -> q
        self._log: dict[str, list[EventRecord]] = defaultdict(list)
        self._tracked: dict[str, TrackedChoreography] = {}
        self._staged: dict[str, _Held] = {}  # message id -> event; staging order

    async def subscribe(
        self, service: str, queue: str, event_types: Collection[str], *, now: float
    ) -> None:
        for event_type in event_types:
            self._routes[(event_type, service)] = queue

    async def subscribers(self, event_type: str) -> list[str]:
        return sorted({q for (t, _), q in self._routes.items() if t == event_type})

    async def inbox_reply(self, consumer: str, message_id: str) -> bytes | None:
        return await self._store.inbox_reply(consumer, message_id)

    async def record_inbox(
        self, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        return await self._store.record_inbox(consumer, message_id, reply)

    async def stage_event_on(self, conn: Any, event: StagedEvent) -> bool:
        """Stage ``event`` at once; ``conn`` must be None (no transactions)."""
        if conn is not None:
            raise StoreError(
                "InMemoryEventStore has no transactions to stage events in: "
                f"pass conn=None, not a {type(conn).__name__}"
            )
        if event.message_id in self._staged:
            return False
        self._staged[event.message_id] = _Held(event)
        return True

    async def claim_staged(
        self, service: str, owner: str, *, now: float, hold: float, limit: int = 100
    ) -> list[StagedEvent]:
        claimed: list[StagedEvent] = []
        for held in self._staged.values():
            if len(claimed) >= limit:
                break
            free = held.locked_until is None or held.locked_until < now
            if held.event.service == service and (free or held.locked_by == owner):
                held.locked_by, held.locked_until = owner, now + hold
                claimed.append(held.event)
        return claimed

    async def forget_staged(self, message_ids: Collection[str]) -> None:
        for message_id in message_ids:
            self._staged.pop(message_id, None)

    async def record_event(
        self, record: EventRecord, progress: Progress | None = None
    ) -> ChoreographyStatus | None:
        self._log[record.correlation_id].append(record)
        if progress is None or record.outcome not in (
            EventOutcome.PUBLISHED,
            EventOutcome.CONSUMED,
        ):
            return None
        cid, now = record.correlation_id, record.recorded_at
        seen = frozenset(
            r.event_type
            for r in self._log[cid]
            if r.choreography == progress.choreography
            and r.outcome in (EventOutcome.PUBLISHED, EventOutcome.CONSUMED)
        )
        status = progress.classify(seen)
        current = self._tracked.get(cid) or TrackedChoreography(
            correlation_id=cid,
            name=progress.choreography,
            status=status,
            started_at=now,
            updated_at=now,
            deadline=now,
            definition_version=progress.version,
            fingerprint=progress.fingerprint,
        )
        self._tracked[cid] = replace(
            current, status=status, updated_at=now, deadline=now + progress.timeout
        )
        return status

    async def timeline(self, correlation_id: str) -> list[EventRecord]:
        return list(self._log.get(correlation_id, ()))

    async def tracked(self, correlation_id: str) -> TrackedChoreography | None:
        return self._tracked.get(correlation_id)

    async def list_tracked(
        self, *, status: ChoreographyStatus | None = None, limit: int = 100
    ) -> list[TrackedChoreography]:
        rows = [t for t in self._tracked.values() if status in (None, t.status)]
        rows.sort(key=lambda t: (-t.updated_at, t.correlation_id))
        return rows[:limit]

    async def mark_stalled(
        self, *, now: float, limit: int = 100
    ) -> list[TrackedChoreography]:
        due = sorted(
            (
                t
                for t in self._tracked.values()
                if t.status in _ACTIVE and t.deadline < now
            ),
            key=lambda t: (t.deadline, t.correlation_id),
        )[:limit]
        changed = []
        for t in due:
            self._tracked[t.correlation_id] = replace(
                t, status=ChoreographyStatus.STALLED
            )
            changed.append(self._tracked[t.correlation_id])
        return changed

    async def live_choreographies(self) -> LiveChoreographies:
        return dict(
            Counter(
                (t.name, t.definition_version, t.fingerprint)
                for t in self._tracked.values()
                if not t.status.terminal
            )
        )

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "InMemoryEventStore()"
