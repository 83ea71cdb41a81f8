"""Choreography routes, inbox, tracker and event outbox in SQLite, beside
the saga tables.

Wraps a :class:`SQLiteStore` (its connection and migrations runner). Writes
run inside ``BEGIN IMMEDIATE``, which serialises recorders of one file, so a
choreography's status is computed from every event recorded before it, and
each staged event is claimed by one bus at a time. An idle claim is a read.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from sagakit.adapters.store.sql import queries
from sagakit.adapters.store.sqlite import SQLiteStore
from sagakit.errors import StoreError
from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventOutcome,
    EventRecord,
    Progress,
    StagedEvent,
    TrackedChoreography,
)

_Q = queries("sqlite")


def _callers(conn: Any, method: str) -> sqlite3.Connection:
    """``conn`` if it is a ``sqlite3.Connection``; else a clear StoreError."""
    if not isinstance(conn, sqlite3.Connection):
        raise StoreError(
            f"{method} needs a sqlite3.Connection, not {type(conn).__name__}"
        )
    return conn


def _tracked(row: Sequence[Any]) -> TrackedChoreography:
    return TrackedChoreography(
        correlation_id=row[0],
        name=row[1],
        status=ChoreographyStatus(row[2]),
        started_at=row[3],
        updated_at=row[4],
        deadline=row[5],
    )


def _log_row(r: EventRecord) -> tuple[Any, ...]:
    return (
        r.correlation_id,
        r.choreography,
        r.service,
        r.event_type,
        r.message_id,
        r.outcome.value,
        r.detail,
        r.recorded_at,
    )


class SQLiteEventStore:
    """An :class:`~sagakit.ports.event_store.EventStore` in one SQLite file.

    Pass a path (the file is opened and migrated) or an open ``SQLiteStore``
    to share its connection; ``close`` closes only what it opened, unless
    ``owned=True``.
    """

    def __init__(
        self,
        path: str | Path | SQLiteStore = "sagakit.db",
        *,
        migrate: bool = True,
        owned: bool = False,
    ) -> None:
        shared = isinstance(path, SQLiteStore)
        self._db = (
            path
            if isinstance(path, SQLiteStore)
            else SQLiteStore(path, migrate=migrate)
        )
        self._owned = owned or not shared
        self._conn = self._db._conn
        self.path = self._db.path

    def _fail(self, about: str, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"{about} failed on {self.path!r}: {exc}")

    def _read(self, about: str, query: str, params: Sequence[Any]) -> list[Any]:
        try:
            return self._conn.execute(_Q[query], params).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(about, exc) from exc

    async def subscribe(
        self, service: str, queue: str, event_types: Collection[str], *, now: float
    ) -> None:
        rows = [(t, service, queue, now) for t in sorted(set(event_types))]
        try:
            with self._db._transaction():
                self._conn.executemany(_Q["event_subscribe"], rows)
        except sqlite3.Error as exc:
            raise self._fail(f"subscribing {service!r}", exc) from exc

    async def subscribers(self, event_type: str) -> list[str]:
        rows = self._read(
            f"routes of {event_type!r}", "event_subscribers", (event_type,)
        )
        return [r[0] for r in rows]

    async def inbox_reply(self, consumer: str, message_id: str) -> bytes | None:
        return await self._db.inbox_reply(consumer, message_id)

    async def record_inbox(
        self, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        return await self._db.record_inbox(consumer, message_id, reply)

    async def record_inbox_on(
        self, conn: Any, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        """The inbox entry on the caller's ``sqlite3.Connection`` to the same
        file, inside the transaction it has open (nothing is committed)."""
        try:
            cur = _callers(conn, "record_inbox_on").execute(
                _Q["insert_inbox"], (consumer, message_id, reply, time.time())
            )
        except sqlite3.Error as exc:
            raise self._fail(f"recording message {message_id!r}", exc) from exc
        return cur.rowcount == 1

    async def stage_event_on(self, conn: Any, event: StagedEvent) -> bool:
        """The staged event on the caller's ``sqlite3.Connection`` to the same
        file, inside the transaction it has open (nothing is committed)."""
        row = dataclasses.astuple(event)  # the columns, in order
        try:
            cur = _callers(conn, "publish_on").execute(_Q["event_outbox_stage"], row)
        except sqlite3.Error as exc:
            raise self._fail(f"staging event {event.message_id!r}", exc) from exc
        return cur.rowcount == 1

    async def claim_staged(
        self, service: str, owner: str, *, now: float, hold: float, limit: int = 100
    ) -> list[StagedEvent]:
        about = f"claiming events staged by {service!r}"
        if not self._read(about, "event_outbox_due", (service, owner, now))[0][0]:
            return []  # nothing to claim: no write lock taken
        try:
            with self._db._transaction():
                rows = self._conn.execute(
                    _Q["event_outbox_claim"], (service, owner, now, hold, limit)
                ).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(about, exc) from exc
        rows.sort(key=lambda r: r[0])  # rowid: the staging order
        return [StagedEvent(*r[1:]) for r in rows]

    async def forget_staged(self, message_ids: Collection[str]) -> None:
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return
        try:
            with self._db._transaction():
                self._conn.execute(_Q["event_outbox_delete"], (json.dumps(ids),))
        except sqlite3.Error as exc:
            raise self._fail(f"forgetting {len(ids)} staged events", exc) from exc

    async def record_event(
        self, record: EventRecord, progress: Progress | None = None
    ) -> ChoreographyStatus | None:
        about = f"recording {record.event_type} of {record.correlation_id}"
        if record.outcome not in (EventOutcome.PUBLISHED, EventOutcome.CONSUMED):
            progress = None  # duplicates and failures are not progress
        status: ChoreographyStatus | None = None
        cid, now = record.correlation_id, record.recorded_at
        try:
            with self._db._transaction():
                if progress is not None:
                    deadline = now + progress.timeout
                    self._conn.execute(
                        _Q["choreography_lock"],
                        (cid, progress.choreography, now, deadline),
                    )
                self._conn.execute(_Q["event_log_insert"], _log_row(record))
                if progress is not None:
                    seen = self._conn.execute(
                        _Q["choreography_seen"], (cid, progress.choreography)
                    ).fetchall()
                    status = progress.classify(frozenset(r[0] for r in seen))
                    self._conn.execute(
                        _Q["choreography_update"], (cid, status.value, now, deadline)
                    )
        except sqlite3.Error as exc:
            raise self._fail(about, exc) from exc
        return status

    async def timeline(self, correlation_id: str) -> list[EventRecord]:
        rows = self._read(
            f"timeline of {correlation_id}", "event_timeline", (correlation_id,)
        )
        return [
            EventRecord(
                correlation_id=r[0],
                choreography=r[1],
                service=r[2],
                event_type=r[3],
                message_id=r[4],
                outcome=EventOutcome(r[5]),
                detail=r[6],
                recorded_at=r[7],
            )
            for r in rows
        ]

    async def tracked(self, correlation_id: str) -> TrackedChoreography | None:
        rows = self._read(
            f"choreography {correlation_id}", "choreography_get", (correlation_id,)
        )
        return _tracked(rows[0]) if rows else None

    async def list_tracked(
        self, *, status: ChoreographyStatus | None = None, limit: int = 100
    ) -> list[TrackedChoreography]:
        value = None if status is None else ChoreographyStatus(status).value
        rows = self._read("listing choreographies", "choreography_list", (value, limit))
        return [_tracked(r) for r in rows]

    async def mark_stalled(
        self, *, now: float, limit: int = 100
    ) -> list[TrackedChoreography]:
        try:
            with self._db._transaction():
                rows = self._conn.execute(
                    _Q["choreography_mark_stalled"], (now, limit)
                ).fetchall()
        except sqlite3.Error as exc:
            raise self._fail("flagging stalled choreographies", exc) from exc
        return sorted((_tracked(r) for r in rows), key=lambda t: t.deadline)

    async def close(self) -> None:
        if self._owned:
            await self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteEventStore({self.path!r})"
