"""Choreography routes, inbox, tracker and event outbox in PostgreSQL, beside
the saga tables.

``PostgresEventStore.connect(dsn)`` opens (and migrates) a
:class:`PostgresDatabase`; ``PostgresEventStore(database)`` composes an open
one (a ``PostgresStore`` is taken for its database). Recording a tracked
event locks the choreography's row first (an upsert), so concurrent
recorders of one correlation id take turns and each computes the status from
every event committed before it.

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

from sagakit.adapters.store import event_rows
from sagakit.adapters.store.events_sql import ServerEvents
from sagakit.adapters.store.inbox import PostgresInbox
from sagakit.adapters.store.postgres_database import OnPostgres, PostgresDatabase
from sagakit.adapters.store.rows import unique_ids
from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventRecord,
    Progress,
    StagedEvent,
)


class PostgresEventStore(OnPostgres, PostgresInbox, ServerEvents[PostgresDatabase]):
    """An :class:`~sagakit.ports.event_store.EventStore` on PostgreSQL."""

    def __init__(
        self, database: PostgresDatabase | Any, *, owned: bool = False
    ) -> None:
        super().__init__(database, owned=owned)
        self._fetch = self.database.fetch

    async def write(self, about: str, query: str, *args: Any) -> list[Any]:
        """One statement, committed (not counted, as every one-statement call)."""
        return await self._fetch(about, query, *args)

    async def subscribe(
        self, service: str, queue: str, event_types: Collection[str], *, now: float
    ) -> None:
        routes = [(t, service, queue, now) for t in sorted(set(event_types))]
        db = self.database
        async with db.transaction(f"subscribing {service!r}") as conn:
            await conn.executemany(db.sql("event_subscribe"), routes)

    async def stage_event_on(self, conn: Any, event: StagedEvent) -> bool:
        """The staged event on the caller's asyncpg connection (same
        database), inside the transaction it has open; nothing is committed."""
        try:
            row = await self.database.callers(conn, "publish_on").fetchrow(
                self.database.sql("event_outbox_stage"), *dataclasses.astuple(event)
            )
        except self.database.driver_errors as exc:
            about = f"staging event {event.message_id!r}"
            raise self.database.error(about, exc) from exc
        return row is not None

    async def forget_staged(self, message_ids: Collection[str]) -> None:
        ids = unique_ids(message_ids)
        if ids:
            await self._fetch(
                f"forgetting {len(ids)} staged events", "event_outbox_delete", ids
            )

    async def record_event(
        self, record: EventRecord, progress: Progress | None = None
    ) -> ChoreographyStatus | None:
        cid, now = record.correlation_id, record.recorded_at
        log = event_rows.event_log_row(record)
        about = f"recording {record.event_type} of {cid}"
        if progress is None or not event_rows.is_progress(record):
            await self._fetch(about, "event_log_insert", *log)
            return None
        deadline = now + progress.timeout
        db = self.database
        async with db.transaction(about) as conn:
            await conn.execute(
                db.sql("choreography_lock"),
                cid,
                progress.choreography,
                now,
                deadline,
                *event_rows.definition_of(progress),
            )
            await conn.execute(db.sql("event_log_insert"), *log)
            seen = await conn.fetch(
                db.sql("choreography_seen"), cid, progress.choreography
            )
            status = progress.classify(frozenset(r[0] for r in seen))
            await conn.execute(
                db.sql("choreography_update"), cid, status.value, now, deadline
            )
        return status
