"""Choreography routes, inbox, tracker and event outbox in MySQL or MariaDB,
beside the saga tables.

``MySQLEventStore.connect(url)`` opens (and migrates) a
:class:`MySQLDatabase`; ``MySQLEventStore(database)`` composes an open one (a
``MySQLStore`` is taken for its database). Recording a tracked event locks
the choreography's row first (an upsert), so concurrent recorders of one
correlation id take turns and each computes the status from every event
committed before it.

:meth:`MySQLEventStore.record_inbox_on` and
:meth:`~MySQLEventStore.stage_event_on` write on the caller's own asyncmy
connection, inside its transaction: a handler's business write and its inbox
mark, or an event staged in the outbox, commit or roll back with it.
Claimers lock staged rows with ``FOR UPDATE SKIP LOCKED`` and hold them, so
each is published by one bus at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from sagakit.adapters.store import event_rows
from sagakit.adapters.store.events_sql import ServerEvents
from sagakit.adapters.store.inbox import MySQLInbox
from sagakit.adapters.store.mysql_database import MySQLDatabase, OnMySQL, errno
from sagakit.adapters.store.rows import dumps, unique_ids
from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventRecord,
    Progress,
    StagedEvent,
)

_DEADLOCK = 1213
_ATTEMPTS = 5


class MySQLEventStore(OnMySQL, MySQLInbox, ServerEvents[MySQLDatabase]):
    """An :class:`~sagakit.ports.event_store.EventStore` on MySQL."""

    async def write(self, about: str, query: str, *args: Any) -> list[Any]:
        """The named block in a transaction of its own, committed and counted."""
        return await self.database.write(about, query, *args)

    async def subscribe(
        self, service: str, queue: str, event_types: Collection[str], *, now: float
    ) -> None:
        db = self.database
        async with db.transaction(f"subscribing {service!r}") as conn:
            for event_type in sorted(set(event_types)):
                await db.run(conn, "event_subscribe", event_type, service, queue, now)

    async def stage_event_on(self, conn: Any, event: StagedEvent) -> bool:
        """The staged event on the caller's asyncmy connection (same
        database), inside the transaction it has open; nothing is committed."""
        db = self.database
        try:
            _, new = await db.run(
                db.callers(conn, "publish_on"),
                "event_outbox_stage",
                *dataclasses.astuple(event),
            )
        except db.driver_errors as exc:
            raise db.error(f"staging event {event.message_id!r}", exc) from exc
        return new == 1

    async def forget_staged(self, message_ids: Collection[str]) -> None:
        ids = unique_ids(message_ids)
        if ids:
            about = f"forgetting {len(ids)} staged events"
            await self.database.execute(about, "event_outbox_delete", dumps(ids))

    async def record_event(
        self, record: EventRecord, progress: Progress | None = None
    ) -> ChoreographyStatus | None:
        log = event_rows.event_log_row(record)
        about = f"recording {record.event_type} of {record.correlation_id}"
        if progress is None or not event_rows.is_progress(record):
            await self.database.execute(about, "event_log_insert", *log)
            return None
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await self._track(about, record, progress, log)
            except self.database.driver_errors as exc:  # pragma: no cover - rare
                if errno(exc) != _DEADLOCK or attempt == _ATTEMPTS:
                    raise self.database.error(about, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _track(
        self,
        about: str,
        record: EventRecord,
        progress: Progress,
        log: tuple[Any, ...],
    ) -> ChoreographyStatus:
        """Record a tracked event in one transaction: lock (or create) the
        choreography's row, log the event, classify what it has seen, save
        the status. Driver errors are raised as they are (the caller may try
        again after a deadlock)."""
        cid, now = record.correlation_id, record.recorded_at
        deadline = now + progress.timeout
        db = self.database
        async with db.connection() as conn:
            await conn.begin()
            try:
                (seen,), _ = await db.run(
                    conn,
                    "choreography_lock",
                    cid,
                    progress.choreography,
                    now,
                    deadline,
                    *event_rows.definition_of(progress),
                    *log,
                )
                status = progress.classify(frozenset(r[0] for r in seen))
                await db.run(
                    conn, "choreography_update", cid, status.value, now, deadline
                )
            except BaseException:
                if conn.connected:
                    await conn.rollback()
                raise
            await conn.commit()
        db.commits += 1
        return status
