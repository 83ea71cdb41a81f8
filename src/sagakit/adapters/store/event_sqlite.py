"""Choreography routes, inbox, tracker and event outbox in SQLite, beside
the saga tables.

Composes a :class:`SQLiteDatabase` (its connection and migrations runner).
Writes run inside ``BEGIN IMMEDIATE``, which serialises recorders of one
file, so a choreography's status is computed from every event recorded before
it, and each staged event is claimed by one bus at a time. An idle claim is a
read.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Collection
from pathlib import Path
from typing import Any

from sagakit.adapters.store import event_rows
from sagakit.adapters.store.inbox import SQLiteInbox
from sagakit.adapters.store.reads import ChoreographyReads
from sagakit.adapters.store.rows import dumps, unique_ids
from sagakit.adapters.store.sqlite_database import OnSQLite, SQLiteDatabase
from sagakit.errors import StoreError
from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventRecord,
    Progress,
    StagedEvent,
    TrackedChoreography,
)


class SQLiteEventStore(OnSQLite, SQLiteInbox, ChoreographyReads[SQLiteDatabase]):
    """An :class:`~sagakit.ports.event_store.EventStore` in one SQLite file.

    Pass a path (the file is opened and migrated), or an open
    :class:`SQLiteDatabase` (or ``SQLiteStore``) to share its connection;
    ``close`` closes only what it opened, unless ``owned=True``.
    """

    def __init__(
        self,
        path: str | Path | SQLiteDatabase | Any = "sagakit.db",
        *,
        migrate: bool = True,
        owned: bool = False,
    ) -> None:
        super().__init__(path, migrate=migrate, owned=owned)

    def _fail(self, about: str, exc: sqlite3.Error) -> StoreError:
        return self.database.error(about, exc)

    async def subscribe(
        self, service: str, queue: str, event_types: Collection[str], *, now: float
    ) -> None:
        routes = [(t, service, queue, now) for t in sorted(set(event_types))]
        with self.database.transaction(f"subscribing {service!r}"):
            self.database.executemany("event_subscribe", routes)

    async def stage_event_on(self, conn: Any, event: StagedEvent) -> bool:
        """The staged event on the caller's ``sqlite3.Connection`` to the same
        file, inside the transaction it has open (nothing is committed)."""
        row = dataclasses.astuple(event)  # the columns, in order
        try:
            cur = self.database.callers(conn, "publish_on").execute(
                self.database.sql("event_outbox_stage"), row
            )
        except sqlite3.Error as exc:
            raise self._fail(f"staging event {event.message_id!r}", exc) from exc
        return cur.rowcount == 1

    async def claim_staged(
        self, service: str, owner: str, *, now: float, hold: float, limit: int = 100
    ) -> list[StagedEvent]:
        about = f"claiming events staged by {service!r}"
        db = self.database
        if not db.fetchall(about, "event_outbox_due", (service, owner, now))[0][0]:
            return []  # nothing to claim: no write lock taken
        with db.transaction(about):
            claimed = db.execute(
                "event_outbox_claim", (service, owner, now, hold, limit)
            ).fetchall()
        claimed.sort(key=lambda r: r[0])  # rowid: the staging order
        return [StagedEvent(*r[1:]) for r in claimed]

    async def forget_staged(self, message_ids: Collection[str]) -> None:
        ids = unique_ids(message_ids)
        if ids:
            with self.database.transaction(f"forgetting {len(ids)} staged events"):
                self.database.execute("event_outbox_delete", (dumps(ids),))

    async def record_event(
        self, record: EventRecord, progress: Progress | None = None
    ) -> ChoreographyStatus | None:
        about = f"recording {record.event_type} of {record.correlation_id}"
        if not event_rows.is_progress(record):
            progress = None
        status: ChoreographyStatus | None = None
        cid, now = record.correlation_id, record.recorded_at
        db = self.database
        with db.transaction(about):
            if progress is not None:
                deadline = now + progress.timeout
                db.execute(
                    "choreography_lock",
                    (
                        cid,
                        progress.choreography,
                        now,
                        deadline,
                        *event_rows.definition_of(progress),
                    ),
                )
            db.execute("event_log_insert", event_rows.event_log_row(record))
            if progress is not None:
                seen = db.execute(
                    "choreography_seen", (cid, progress.choreography)
                ).fetchall()
                status = progress.classify(frozenset(r[0] for r in seen))
                db.execute("choreography_update", (cid, status.value, now, deadline))
        return status

    async def mark_stalled(
        self, *, now: float, limit: int = 100
    ) -> list[TrackedChoreography]:
        with self.database.transaction("flagging stalled choreographies"):
            found = self.database.execute(
                "choreography_mark_stalled", (now, limit)
            ).fetchall()
        return sorted(
            map(event_rows.tracked_choreography, found), key=lambda t: t.deadline
        )
