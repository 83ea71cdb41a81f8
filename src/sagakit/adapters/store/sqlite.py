"""The embedded default store: saga instances in one SQLite file.

It composes a :class:`~sagakit.adapters.store.sqlite_database.SQLiteDatabase`
(connection, transactions, named queries, migrations), which the workflow and
event stores of the same file may share.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sagakit.adapters.store import rows
from sagakit.adapters.store.inbox import SQLiteInbox
from sagakit.adapters.store.locks_sql import LockReads, apply_change
from sagakit.adapters.store.reads import SagaReads
from sagakit.adapters.store.rows import dumps
from sagakit.adapters.store.sagas_sql import SqlSagas
from sagakit.adapters.store.sql import Migration
from sagakit.adapters.store.sqlite_database import (
    OnSQLite,
    SQLiteDatabase,
    split_statements,
)
from sagakit.errors import (
    ConcurrencyError,
    DuplicateMessage,
    SagaAlreadyExists,
    SagaNotFound,
)
from sagakit.ports.store import Created, SagaRecord
from sagakit.ports.writes import RecordWrites

if TYPE_CHECKING:  # made when asked for: a saga store's reads need none
    from sagakit.adapters.store.event_sqlite import SQLiteEventStore
    from sagakit.adapters.store.notification_sqlite import SQLiteNotificationStore
    from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
    from sagakit.ports.entry import (
        Create,
        HistoryEntry,
        InboxEntry,
        OutboxMessage,
        Save,
    )
    from sagakit.ports.lock_entry import LockChange

_REFUSED = (ConcurrencyError, SagaNotFound, DuplicateMessage, SagaAlreadyExists)
"""What one save of a batch fails with alone (see ``save_many``)."""

_REMEMBERED = 4096
"""Sagas whose last write :class:`LastWritten` keeps at most."""


class LastWritten:
    """The version and status this store last wrote per saga, to guess when
    a save can update the row in place (``update_saga_in_place``: same
    status, so the indexes on it are left alone and the commit writes fewer
    pages). Only a guess: the statement's ``WHERE`` checks it, and a save it
    does not fit runs the full ``update_saga``."""

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[int, str]] = {}

    def fits(self, record: SagaRecord, expected_version: int) -> bool:
        seen = self._by_id.get(record.saga_id)
        return seen is not None and seen == (expected_version, record.status.value)

    def wrote(self, record: SagaRecord) -> None:
        if record.status.terminal:
            self._by_id.pop(record.saga_id, None)
            return
        if len(self._by_id) >= _REMEMBERED:  # sagas driven elsewhere since
            self._by_id.clear()
        self._by_id[record.saga_id] = (record.version, record.status.value)


__all__ = ["SQLiteDatabase", "SQLiteStore", "split_statements"]


def _lease_until(
    owner: str | None, lease: float | None
) -> tuple[str | None, float | None]:
    """Owner and lease end to store, or ``(None, None)`` to leave them alone."""
    if owner is None or lease is None:
        return None, None
    return owner, time.time() + lease


def _saga_row(
    record: SagaRecord, owner: str | None, until: float | None
) -> tuple[Any, ...]:
    """The insert_saga parameters."""
    return (
        *rows.new_saga(record),
        owner,
        until,
        record.deadline,
        record.definition_version,
        record.fingerprint,
    )


def _history_rows(
    record: SagaRecord, history: Sequence[HistoryEntry]
) -> list[tuple[Any, ...]]:
    """The insert_history parameters of ``history``, appended in the
    transaction that has just written ``record``."""
    return rows.history_rows(history, record.created_at, record.saga_id)


class SQLiteStore(
    OnSQLite,
    SQLiteInbox,
    SagaReads[SQLiteDatabase],
    LockReads[SQLiteDatabase],
    SqlSagas[SQLiteDatabase],
    RecordWrites,
):
    """A :class:`~sagakit.ports.store.SagaStore` in one SQLite file.

    Pass a path (the file is opened and, unless ``migrate=False``, migrated;
    ``close`` closes it) or an open :class:`SQLiteDatabase` to share (``close``
    leaves it open). ``path=":memory:"`` keeps everything in memory.
    """

    @cached_property
    def _written(self) -> LastWritten:
        return LastWritten()

    def event_store(self) -> SQLiteEventStore:
        """The choreography tables of this file, on this connection."""
        from sagakit.adapters.store.event_sqlite import (  # noqa: PLC0415 - on use
            SQLiteEventStore,
        )

        return SQLiteEventStore(self.database)

    def workflow_store(self) -> SQLiteWorkflowStore:
        """The workflow tables of this file, on this connection."""
        from sagakit.adapters.store.workflow_sqlite import (  # noqa: PLC0415 - on use
            SQLiteWorkflowStore,
        )

        return SQLiteWorkflowStore(self.database)

    def notification_store(self) -> SQLiteNotificationStore:
        """The notifications for hooks of this file, on this connection."""
        from sagakit.adapters.store.notification_sqlite import (  # noqa: PLC0415 - on use
            SQLiteNotificationStore,
        )

        return SQLiteNotificationStore(self.database)

    # -- schema (the database's) -------------------------------------------

    def migrate(
        self, progress: Callable[[Migration], object] | None = None
    ) -> list[int]:
        """See :meth:`SQLiteDatabase.migrate`."""
        return self.database.migrate(progress)

    def applied_migrations(self) -> list[int]:
        return self.database.applied_migrations()

    # -- writes ------------------------------------------------------------

    def _write_outbox(self, outbox: Sequence[OutboxMessage]) -> None:
        now = time.time()
        self.database.executemany(
            "insert_outbox",
            [
                (
                    m.message_id,
                    m.destination,
                    m.body,
                    m.saga_id,
                    m.available_at,
                    now,
                    m.held_by,
                    None if m.hold is None else now + m.hold,
                )
                for m in outbox
            ],
        )

    async def create_one(self, create: Create) -> Created:
        with self.database.transaction(f"saga {create.record.saga_id}: create"):
            return self._create(create)

    async def create_many(self, creates: Sequence[Create]) -> list[Created | Exception]:
        """See :class:`~sagakit.ports.store.GroupSaves`: one transaction,
        a savepoint per create."""
        return self._each(f"creating {len(creates)} sagas", self._create, creates)

    def _create(self, create: Create) -> Created:
        """``create`` in the open transaction; raises SagaAlreadyExists."""
        record, db = create.record, self.database
        owner, until = _lease_until(create.owner, create.lease)
        if record.idempotency_key is not None:
            row = db.execute(
                "find_saga_by_key", (record.saga_name, record.idempotency_key)
            ).fetchone()
            if row is not None:
                return Created(rows.saga_record(row), False)
        try:
            db.execute("insert_saga", _saga_row(record, owner, until))
        except sqlite3.IntegrityError as exc:
            taken = db.execute("saga_exists", (record.saga_id,)).fetchone()
            if taken is not None:
                raise rows.saga_exists(record.saga_id, taken[0]) from exc
            raise
        db.executemany("insert_history", _history_rows(record, create.history))
        if create.outbox:
            self._write_outbox(create.outbox)
        self._written.wrote(record)
        return Created(record, True)

    async def save_one(self, save: Save, locks: LockChange | None) -> None:
        saga_id = save.record.saga_id
        with self.database.transaction(f"saga {saga_id}: save"):
            self._save(save)
            if locks:  # a refusal raises: the whole save is rolled back
                await apply_change(
                    self._run, saga_id, locks, as_array=dumps, now=time.time()
                )

    async def _run(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """A named statement in the open transaction (it never yields)."""
        return self.database.execute(query, args).fetchall()

    async def save_many(self, saves: Sequence[Save]) -> list[Exception | None]:
        """See :class:`~sagakit.ports.store.GroupSaves`: one transaction,
        a savepoint per save (undone alone when it fails)."""
        done = self._each(f"saving {len(saves)} sagas", self._save, saves)
        return [r if isinstance(r, Exception) else None for r in done]

    def _each(
        self, about: str, write: Callable[[Any], Any], items: Sequence[Any]
    ) -> list[Any]:
        """``write`` each item in one transaction: what each returned, or the
        refusal it raised, which left nothing of it written (its first write
        is the one refused; only an inbox entry, written before the saga, needs
        a savepoint to be undone). Any other error, such as a history line of
        another saga (``insert_history``'s NOT NULL), rolls the whole
        transaction back and is raised (a ``StoreError``)."""
        done: list[Any] = []
        if not items:
            return done
        with self.database.transaction(about) as conn:
            for item in items:
                undo = getattr(item, "inbox", None) is not None
                if undo:
                    conn.execute("SAVEPOINT one")
                try:
                    done.append(write(item))
                except _REFUSED as exc:
                    if undo:
                        conn.execute("ROLLBACK TO one")
                    done.append(exc)
                if undo:
                    conn.execute("RELEASE one")
        return done

    def _save(self, save: Save) -> None:
        """``save`` in the open transaction, or raise what it fails with."""
        record = save.record
        owner, until = _lease_until(save.owner, save.lease)
        db = self.database
        if save.inbox is not None:
            self._receive(record.saga_id, save.inbox)
        params = (
            *rows.saga_changes(record),
            record.saga_id,
            save.expected_version,
            owner,
            until,
            record.deadline,
            record.definition_version,
            record.fingerprint,
            record.created_at,
        )
        cur = None
        if self._written.fits(record, save.expected_version):
            cur = db.execute("update_saga_in_place", params)
        if cur is None or cur.rowcount != 1:
            cur = db.execute("update_saga", params)
        if cur.rowcount != 1:
            self._refused(record, save.expected_version)
        if save.history:
            db.executemany("insert_history", _history_rows(record, save.history))
        if save.outbox:
            self._write_outbox(save.outbox)
        self._written.wrote(record)

    def _refused(self, record: SagaRecord, expected_version: int) -> None:
        """Raise why a save of ``record`` updated no row."""
        found = self.database.execute("saga_version", (record.saga_id,)).fetchone()
        if found is None:
            raise rows.saga_not_found(record.saga_id)
        if found[0] == expected_version:  # the update checks created_at too
            raise ConcurrencyError(
                f"saga {record.saga_id}: the record saved says it was created "
                f"at {record.created_at!r}, the store at {found[1]!r}; a "
                "saga's created_at never changes"
            )
        raise rows.stale_saga(record.saga_id, expected_version)

    def _receive(self, saga_id: str, inbox: InboxEntry) -> None:
        """Record the inbox entry in the open transaction, or raise (rolling
        it back) ``SagaNotFound`` or ``DuplicateMessage``."""
        db = self.database
        cur = db.execute(
            "insert_inbox", (inbox.consumer, inbox.message_id, None, time.time())
        )
        if cur.rowcount == 1:
            return
        if db.execute("saga_exists", (saga_id,)).fetchone() is None:
            raise rows.saga_not_found(saga_id)
        raise rows.consumed_before(saga_id, inbox)

    def _write(
        self, about: str, query: str, params: Sequence[Any]
    ) -> tuple[list[tuple[Any, ...]], int]:
        """One named statement in its own transaction: its rows and rowcount."""
        with self.database.transaction(about):
            cur = self.database.execute(query, params)
            return cur.fetchall(), cur.rowcount

    async def write(self, about: str, query: str, *args: Any) -> list[Any]:
        """One named statement in its own transaction: its rows."""
        return self._write(about, query, args)[0]

    async def claim_rows(self, about: str, *args: Any) -> list[Any]:
        """The candidates and who holds them, then the claim of those, in
        one transaction (an update's RETURNING sees only new values)."""
        owner, _, lease, *_, now = args
        db = self.database
        with db.transaction(about):
            before = dict(db.execute("claim_candidates", args).fetchall())
            ids = dumps(list(before))
            found = db.execute("claim_ids", (owner, ids, lease, now)).fetchall()
        return [(*r, before[r[0]]) for r in found]

    def now_args(self) -> tuple[float]:
        """ "Now" for the queries that read it: this process's clock."""
        return (time.time(),)

    # -- messaging (what the shared queries leave in no order) --------------

    async def claim_outbox(
        self, owner: str, *, lease: float, limit: int = 100
    ) -> list[OutboxMessage]:
        params = (owner, lease, limit, time.time())
        claimed, _ = self._write(f"outbox claim by {owner!r}", "claim_outbox", params)
        claimed.sort(key=lambda r: (r[4], r[5], r[0]))
        return [rows.outbox_message(r) for r in claimed]

    async def release_outbox(self, owner: str | None = None) -> int:
        about = "releasing outbox holds"
        return self._write(about, "release_outbox", (owner,))[1]
