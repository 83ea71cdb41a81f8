"""The event store port: what choreography needs from a database.

Four things live there, next to the saga tables:

- **routes**: which service queue receives which event type. A service
  registers its routes when its :class:`~sagakit.choreography.EventBus`
  starts; a publisher reads them to fan an event out to every subscriber.
- **the inbox**: the same ``sagakit_inbox`` table participants use, so an
  event consumed twice (same message id) runs its handler once.
- **the tracker**: one log line per event a service published or consumed,
  by correlation id, and one row per tracked choreography with its status and
  the deadline by which it must make progress.
- **the event outbox**: events a service staged on its own connection, inside
  its own transaction (:meth:`~sagakit.choreography.EventBus.publish_on`),
  until one of its buses has claimed, published and deleted them.

Times are epoch seconds of the caller's clock (passed in), so a fake clock
drives deadlines in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from sagakit.ports.store import Inbox


class ChoreographyStatus(StrEnum):
    """Where one choreography (one correlation id) is. Stored verbatim."""

    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    COMPENSATING = "compensating"
    """A failure event was seen; some compensating events are still owed."""
    COMPENSATED = "compensated"
    STALLED = "stalled"
    """No progress within the choreography's timeout (flagged by a check)."""

    @property
    def terminal(self) -> bool:
        return self in (ChoreographyStatus.SUCCEEDED, ChoreographyStatus.COMPENSATED)


class EventOutcome(StrEnum):
    """What a service did with an event, as the timeline shows it."""

    PUBLISHED = "published"
    CONSUMED = "consumed"
    """Its handler ran and the inbox recorded it."""
    DUPLICATE = "duplicate"
    """Delivered again (same message id): the handler did not run."""
    FAILED = "failed"
    """Its handler raised; the broker delivers it again (or dead-letters it)."""
    WAITING = "waiting"
    """Not handled: the service lacks the choreography version the event
    carries (the detail says which); the broker delivers it again, to a
    process that may have it, or dead-letters it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    """One line of a choreography's timeline."""

    correlation_id: str
    choreography: str | None
    service: str
    event_type: str
    message_id: str
    outcome: EventOutcome
    recorded_at: float
    detail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackedChoreography:
    """The tracker's row for one correlation id. ``updated_at`` is the last
    progress; ``deadline`` is ``updated_at`` plus the declared timeout."""

    correlation_id: str
    name: str
    status: ChoreographyStatus
    started_at: float
    updated_at: float
    deadline: float
    definition_version: int = 1
    """The version of the choreography its first tracked event carried."""
    fingerprint: str | None = None
    """That version's structural fingerprint (None: unknown, tracked before
    fingerprints were kept)."""


LiveChoreographies = dict[tuple[str, int, str | None], int]
"""Unfinished choreographies by ``(name, definition_version, fingerprint)``."""


@dataclass(frozen=True, slots=True)
class Progress:
    """How to track an event that belongs to a declared choreography.

    ``classify`` maps the event types seen so far for a correlation id (this
    one included) to its status; the store calls it inside the transaction
    that records the event, after locking the choreography's row, so
    concurrent recorders never lose each other's events. ``version`` and
    ``fingerprint`` are those of the definition the event belongs to; the
    row keeps the ones of the event that created it.
    """

    choreography: str
    timeout: float
    classify: Callable[[frozenset[str]], ChoreographyStatus]
    version: int = 1
    fingerprint: str | None = None


class EventStore(Inbox, Protocol):
    """Routes, inbox (:class:`~sagakit.ports.store.Inbox`) and tracker. Every
    method is one transaction."""

    async def subscribe(
        self, service: str, queue: str, event_types: Collection[str], *, now: float
    ) -> None:
        """Route each of ``event_types`` to ``queue`` (the service's queue);
        re-subscribing replaces the service's queue for those types."""

    async def subscribers(self, event_type: str) -> list[str]:
        """The queues that receive ``event_type``, one per service, sorted."""

    async def record_event(
        self, record: EventRecord, progress: Progress | None = None
    ) -> ChoreographyStatus | None:
        """Append ``record`` to the log. With ``progress``, also create or
        update the choreography's row: status from ``classify``, deadline
        ``record.recorded_at + timeout``. Returns the new status, if tracked."""

    async def timeline(self, correlation_id: str) -> list[EventRecord]:
        """The log lines of one correlation id, in the order written."""

    async def tracked(self, correlation_id: str) -> TrackedChoreography | None:
        """The tracker's row, or ``None`` if no declared choreography has it."""

    async def list_tracked(
        self, *, status: ChoreographyStatus | None = None, limit: int = 100
    ) -> list[TrackedChoreography]:
        """Tracked choreographies, most recently updated first."""

    async def mark_stalled(
        self, *, now: float, limit: int = 100
    ) -> list[TrackedChoreography]:
        """Set to ``stalled`` the in-progress or compensating choreographies
        whose deadline is before ``now``; returns those it changed (each is
        returned by one caller only)."""

    async def live_choreographies(self) -> LiveChoreographies:
        """How many tracked choreographies that have not ended (in progress,
        compensating or stalled) started on each definition, by ``(name,
        definition_version, fingerprint)`` (``sagakit deploy-check``). Those
        tracked before versions were kept count as version 1 of unknown
        fingerprint."""

    async def close(self) -> None: ...


@runtime_checkable
class EventStoreSource(Protocol):
    """A saga store that also gives the choreography tables of its database,
    on its own connection (so the event bus can take a saga store)."""

    def event_store(self) -> EventStore:
        """The event store sharing this store's database; closing it leaves
        the database open."""


class TransactionalInbox(Protocol):
    """An event store whose inbox can be written on the caller's own
    connection, inside the caller's transaction (same database)."""

    async def record_inbox_on(
        self, conn: Any, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        """Insert the inbox entry on ``conn`` (no commit); False if the
        message was consumed before."""


@dataclass(frozen=True, slots=True)
class StagedEvent:
    """An event in the outbox: ``body`` is its encoded envelope, sent as it is
    by a bus of ``service`` once the transaction that staged it commits.
    The fields are the outbox's columns, in the order the stores use."""

    message_id: str
    service: str
    event_type: str
    correlation_id: str
    body: bytes
    created_at: float


class TransactionalOutbox(Protocol):
    """An event store whose outbox can be written on the caller's own
    connection, inside the caller's transaction (same database), and that
    hands staged events to one claimer at a time."""

    async def stage_event_on(self, conn: Any, event: StagedEvent) -> bool:
        """Insert ``event`` on ``conn`` (no commit); False if its message id
        is staged already (the first one is kept)."""

    async def claim_staged(
        self, service: str, owner: str, *, now: float, hold: float, limit: int = 100
    ) -> list[StagedEvent]:
        """Hold for ``owner`` until ``now + hold`` up to ``limit`` events
        ``service`` staged, in staging order, and return them: those nobody
        holds, those whose hold expired (a dead claimer's) and those ``owner``
        holds already (taken again, hold renewed). Others wait for their
        hold to expire, so each is with one claimer at a time."""

    async def forget_staged(self, message_ids: Collection[str]) -> None:
        """Delete these staged events (they were published); unknown ids are
        ignored."""


__all__ = [
    "ChoreographyStatus",
    "EventOutcome",
    "EventRecord",
    "EventStore",
    "EventStoreSource",
    "LiveChoreographies",
    "Progress",
    "StagedEvent",
    "TrackedChoreography",
    "TransactionalInbox",
    "TransactionalOutbox",
]
