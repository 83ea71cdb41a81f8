"""Choreography routes, inbox, tracker and event outbox in PostgreSQL, beside
the saga tables.

``PostgresEventStore.connect(dsn)`` opens a pool and migrates with
:class:`PostgresStore`'s runner; ``PostgresEventStore(store)`` shares an open
store's pool. Recording a tracked event locks the choreography's row first
(an upsert), so concurrent recorders of one correlation id take turns and
each computes the status from every event committed before it.

:meth:`PostgresEventStore.record_inbox_on` writes the inbox entry on the
caller's own asyncpg connection, inside its transaction: a handler's business
write and its inbox mark then commit, or roll back, together.
:meth:`~PostgresEventStore.stage_event_on` does the same for an event staged
in the outbox; claimers lock staged rows with ``FOR UPDATE SKIP LOCKED`` and
hold them, so each is published by one bus at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

import asyncpg  # the postgres module below checks it is installed first

from sagakit.adapters.store.postgres import _DRIVER_ERRORS, PostgresStore, _reason
from sagakit.adapters.store.sql import queries
from sagakit.errors import StoreError
from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventOutcome,
    EventRecord,
    Progress,
    StagedEvent,
    TrackedChoreography,
)

_Q = queries("postgres")


def _callers(
    conn: Any, method: str
) -> asyncpg.Connection | asyncpg.pool.PoolConnectionProxy:
    """``conn`` if it is an asyncpg connection; else a clear StoreError."""
    if not isinstance(conn, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy):
        raise StoreError(
            f"{method} needs an asyncpg connection, not {type(conn).__name__}"
        )
    return conn


def _tracked(row: asyncpg.Record) -> TrackedChoreography:
    return TrackedChoreography(
        correlation_id=row["correlation_id"],
        name=row["name"],
        status=ChoreographyStatus(row["status"]),
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        deadline=row["deadline"],
    )


class PostgresEventStore:
    """An :class:`~sagakit.ports.event_store.EventStore` on PostgreSQL."""

    def __init__(self, store: PostgresStore, *, owned: bool = False) -> None:
        self._store = store
        self._pool: asyncpg.Pool = store._pool
        self._owned = owned
        self.where = store.where

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 10, migrate: bool = True
    ) -> PostgresEventStore:
        """Open a pool on ``dsn`` and, unless ``migrate=False``, migrate."""
        store = await PostgresStore.connect(
            dsn, min_size=min_size, max_size=max_size, migrate=migrate
        )
        return cls(store, owned=True)

    def _error(self, about: str, exc: BaseException) -> StoreError:
        return StoreError(
            f"{about} failed on PostgreSQL at {self.where}: {_reason(exc)}"
        )

    async def _fetch(self, about: str, query: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return await self._pool.fetch(_Q[query], *args)
        except _DRIVER_ERRORS as exc:
            raise self._error(about, exc) from exc

    async def subscribe(
        self, service: str, queue: str, event_types: Collection[str], *, now: float
    ) -> None:
        rows = [(t, service, queue, now) for t in sorted(set(event_types))]
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.executemany(_Q["event_subscribe"], rows)
        except _DRIVER_ERRORS as exc:
            raise self._error(f"subscribing {service!r}", exc) from exc

    async def subscribers(self, event_type: str) -> list[str]:
        rows = await self._fetch(
            f"routes of {event_type!r}", "event_subscribers", event_type
        )
        return [r["queue"] for r in rows]

    async def inbox_reply(self, consumer: str, message_id: str) -> bytes | None:
        return await self._store.inbox_reply(consumer, message_id)

    async def record_inbox(
        self, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        return await self._store.record_inbox(consumer, message_id, reply)

    async def record_inbox_on(
        self, conn: Any, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        """The inbox entry on the caller's asyncpg connection (same database),
        inside the transaction it has open; nothing is committed here."""
        try:
            row = await _callers(conn, "record_inbox_on").fetchrow(
                _Q["record_inbox"], consumer, message_id, reply
            )
        except _DRIVER_ERRORS as exc:
            raise self._error(f"recording message {message_id!r}", exc) from exc
        return row is not None

    async def stage_event_on(self, conn: Any, event: StagedEvent) -> bool:
        """The staged event on the caller's asyncpg connection (same
        database), inside the transaction it has open; nothing is committed."""
        try:
            row = await _callers(conn, "publish_on").fetchrow(
                _Q["event_outbox_stage"], *dataclasses.astuple(event)
            )
        except _DRIVER_ERRORS as exc:
            raise self._error(f"staging event {event.message_id!r}", exc) from exc
        return row is not None

    async def claim_staged(
        self, service: str, owner: str, *, now: float, hold: float, limit: int = 100
    ) -> list[StagedEvent]:
        rows = await self._fetch(
            f"claiming events staged by {service!r}",
            "event_outbox_claim",
            service,
            owner,
            now,
            hold,
            limit,
        )
        return [StagedEvent(*r) for r in rows]  # the columns, in order

    async def forget_staged(self, message_ids: Collection[str]) -> None:
        ids = list(dict.fromkeys(message_ids))
        if ids:
            await self._fetch(
                f"forgetting {len(ids)} staged events", "event_outbox_delete", ids
            )

    async def record_event(
        self, record: EventRecord, progress: Progress | None = None
    ) -> ChoreographyStatus | None:
        if record.outcome not in (EventOutcome.PUBLISHED, EventOutcome.CONSUMED):
            progress = None  # duplicates and failures are not progress
        cid, now = record.correlation_id, record.recorded_at
        log = (
            cid,
            record.choreography,
            record.service,
            record.event_type,
            record.message_id,
            record.outcome.value,
            record.detail,
            now,
        )
        about = f"recording {record.event_type} of {cid}"
        try:
            if progress is None:
                await self._pool.execute(_Q["event_log_insert"], *log)
                return None
            deadline = now + progress.timeout
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    _Q["choreography_lock"], cid, progress.choreography, now, deadline
                )
                await conn.execute(_Q["event_log_insert"], *log)
                seen = await conn.fetch(
                    _Q["choreography_seen"], cid, progress.choreography
                )
                status = progress.classify(frozenset(r[0] for r in seen))
                await conn.execute(
                    _Q["choreography_update"], cid, status.value, now, deadline
                )
        except _DRIVER_ERRORS as exc:
            raise self._error(about, exc) from exc
        return status

    async def timeline(self, correlation_id: str) -> list[EventRecord]:
        rows = await self._fetch(
            f"timeline of {correlation_id}", "event_timeline", correlation_id
        )
        return [
            EventRecord(
                correlation_id=r["correlation_id"],
                choreography=r["choreography"],
                service=r["service"],
                event_type=r["event_type"],
                message_id=r["message_id"],
                outcome=EventOutcome(r["outcome"]),
                detail=r["detail"],
                recorded_at=r["recorded_at"],
            )
            for r in rows
        ]

    async def tracked(self, correlation_id: str) -> TrackedChoreography | None:
        rows = await self._fetch(
            f"choreography {correlation_id}", "choreography_get", correlation_id
        )
        return _tracked(rows[0]) if rows else None

    async def list_tracked(
        self, *, status: ChoreographyStatus | None = None, limit: int = 100
    ) -> list[TrackedChoreography]:
        value = None if status is None else ChoreographyStatus(status).value
        rows = await self._fetch(
            "listing choreographies", "choreography_list", value, limit
        )
        return [_tracked(r) for r in rows]

    async def mark_stalled(
        self, *, now: float, limit: int = 100
    ) -> list[TrackedChoreography]:
        rows = await self._fetch(
            "flagging stalled choreographies", "choreography_mark_stalled", now, limit
        )
        return sorted((_tracked(r) for r in rows), key=lambda t: t.deadline)

    async def close(self) -> None:
        if self._owned:
            await self._store.close()

    def __repr__(self) -> str:
        return f"PostgresEventStore({self.where!r})"
