"""The server store: saga instances in PostgreSQL.

It composes a :class:`~sagakit.adapters.store.postgres_database.PostgresDatabase`
(pool, connection lane, named queries, migrations), which the workflow and
event stores of the same database may share. Every write is one statement,
so one round trip and one commit: CTEs do the conditional update (or the
insert) and append the history, which travels as a single jsonb array.
"Now", for leases, is the database clock, so workers on hosts with skewed
clocks agree on who owns what.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sagakit.adapters.store import rows
from sagakit.adapters.store.inbox import PostgresInbox
from sagakit.adapters.store.locks_sql import LockReads, apply_change
from sagakit.adapters.store.postgres_database import (
    DRIVER_ERRORS,
    OnPostgres,
    PostgresDatabase,
    UniqueViolation,
    describe,
    reason,
)
from sagakit.adapters.store.reads import SagaReads
from sagakit.adapters.store.sagas_sql import SqlSagas, save_problem
from sagakit.errors import SagaAlreadyExists, StoreError
from sagakit.ports.locks import StopListening
from sagakit.ports.store import Created
from sagakit.ports.writes import RecordWrites

if TYPE_CHECKING:  # made when asked for: a saga store's reads need none
    from sagakit.adapters.store.event_postgres import PostgresEventStore
    from sagakit.adapters.store.notification_postgres import PostgresNotificationStore
    from sagakit.adapters.store.workflow_postgres import PostgresWorkflowStore
    from sagakit.ports.entry import Create, OutboxMessage, Save
    from sagakit.ports.lock_entry import LockChange

__all__ = ["PostgresDatabase", "PostgresStore", "describe"]

# Old private names, kept for code that imported them from here.
_DRIVER_ERRORS = DRIVER_ERRORS
_reason = reason
_SAGAS = "sagakit_saga"  # the table whose primary key is the saga id


def _both(owner: str | None, lease: float | None) -> tuple[str | None, float | None]:
    """Owner and lease seconds to store, or ``(None, None)`` to leave them."""
    if owner is None or lease is None:
        return None, None
    return owner, lease


def _outbox_arrays(
    outbox: Sequence[OutboxMessage],
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Outbox messages as the parallel arrays the statements take: the first
    five, then (after the inbox entry's two) who holds each and for how long."""
    return (
        [m.message_id for m in outbox],
        [m.destination for m in outbox],
        [m.body for m in outbox],
        [m.saga_id for m in outbox],
        [m.available_at for m in outbox],
    ), ([m.held_by for m in outbox], [m.hold for m in outbox])


def _create_call(create: Create, outbox: bool) -> tuple[Any, ...]:
    """The named statement of ``create`` and its arguments: without an
    outbox, one that does not touch it (cheaper)."""
    record = create.record
    owner, lease = _both(create.owner, create.lease)
    outbox_args: tuple[Any, ...] = ()
    if outbox:
        first, holds = (
            _outbox_arrays(create.outbox)
            if create.outbox
            else ((None,) * 5, (None,) * 2)
        )
        outbox_args = (*first, *holds)
    return (
        "create_saga_outbox" if outbox else "create_saga",
        *rows.new_saga(record),
        owner,
        lease,
        rows.history_json(create.history),
        record.deadline,
        *outbox_args,
        record.definition_version,
        record.fingerprint,
    )


def _save_call(save: Save, messaging: bool) -> tuple[Any, ...]:
    """The named statement of ``save`` and its arguments. Without messaging,
    a statement that does not touch the outbox and inbox: each costs a lock
    and an open per call even when empty."""
    record, inbox = save.record, save.inbox
    owner, lease = _both(save.owner, save.lease)
    tail: tuple[Any, ...] = ()
    if messaging:
        first, holds = (
            _outbox_arrays(save.outbox) if save.outbox else ((None,) * 5, (None,) * 2)
        )
        tail = (
            *first,
            None if inbox is None else inbox.consumer,
            None if inbox is None else inbox.message_id,
            *holds,
        )
    return (
        "save_saga_messaging" if messaging else "save_saga",
        record.saga_id,
        *rows.saga_changes(record),
        save.expected_version,
        owner,
        lease,
        rows.history_json(save.history),
        record.deadline,
        *tail,
        record.definition_version,
        record.fingerprint,
    )


def _as_arrays(
    writes: Sequence[Create] | Sequence[Save], columns: Sequence[tuple[Any, ...]]
) -> tuple[Any, ...]:
    """The arguments of ``create_sagas`` or ``save_sagas``: those of
    create_saga or save_saga (``columns``, a tuple per write without its
    history, deadline, definition version and fingerprint), each an array
    with an element per write; where the single statement has each write's
    history, the lines of them all as an array per column (saga ids there,
    the other eight after the fingerprints). A line of another saga than its
    write's raises ``StoreError`` here, so the batch writes nothing: the
    statement appends each line to the saga it names if the batch wrote
    that saga, and cannot tell which write a line came with."""
    records = [w.record for w in writes]
    lines = rows.history_rows(
        [h for w in writes for h in rows.own_lines(w.record.saga_id, w.history)]
    )
    saga_ids, *line_columns = (
        [list(c) for c in zip(*lines, strict=True)] if lines else [[]] * 9
    )
    return (
        *(list(c) for c in zip(*columns, strict=True)),
        saga_ids,
        [r.deadline for r in records],
        [r.definition_version for r in records],
        [r.fingerprint for r in records],
        *line_columns,
    )


def _creates_arrays(creates: Sequence[Create]) -> tuple[Any, ...]:
    """The arguments of ``create_sagas`` (creates without an outbox)."""
    return _as_arrays(
        creates,
        [(*rows.new_saga(c.record), *_both(c.owner, c.lease)) for c in creates],
    )


def _saves_arrays(saves: Sequence[Save]) -> tuple[Any, ...]:
    """The arguments of ``save_sagas`` (saves without messaging)."""
    return _as_arrays(
        saves,
        [
            (
                s.record.saga_id,
                *rows.saga_changes(s.record),
                s.expected_version,
                *_both(s.owner, s.lease),
            )
            for s in saves
        ],
    )


def _distinct(writes: Sequence[Create] | Sequence[Save]) -> bool:
    """Whether no saga has two writes in ``writes`` (one statement for the
    batch needs that)."""
    return len({w.record.saga_id for w in writes}) == len(writes)


def _save_problem(save: Save, row: Any) -> Exception | None:
    """What the save whose statement returned ``row`` raises, if anything."""
    if row is None:
        return save_problem(save, saved=False, found=False, duplicate=False)
    return save_problem(
        save,
        saved=row["saved"] == 1,
        found=bool(row["found"]),
        duplicate=save.inbox is not None and bool(row["duplicate"]),
    )


def _as_list(values: list[Any]) -> list[Any]:
    return values


LOCK_CHANNEL = "sagakit_lock_freed"
"""Notified on commit of a transaction that let go of a lock key or left a
key's queue (the triggers of ``postgres/migrations/0019``)."""


class PostgresStore(
    OnPostgres,
    PostgresInbox,
    SagaReads[PostgresDatabase],
    LockReads[PostgresDatabase],
    SqlSagas[PostgresDatabase],
    RecordWrites,
):
    """A :class:`~sagakit.ports.store.SagaStore` on PostgreSQL.

    Open it with ``await PostgresStore.connect(dsn)`` (it owns the database
    it opens), or compose an open :class:`PostgresDatabase` shared with other
    stores (``close`` leaves it open). ``statements`` counts the statements
    (round trips) store calls sent, next to ``commits``.
    """

    as_array = staticmethod(_as_list)

    def __init__(
        self, database: PostgresDatabase | Any, *, owned: bool = False
    ) -> None:
        super().__init__(database, owned=owned)
        # bound once: a statement costs no extra call layer
        self._fetch = self.database.fetch
        self._fetchrow = self.database.fetchrow

    def event_store(self) -> PostgresEventStore:
        """The choreography tables of this database, on its connections."""
        from sagakit.adapters.store.event_postgres import (  # noqa: PLC0415 - on use
            PostgresEventStore,
        )

        return PostgresEventStore(self.database)

    def workflow_store(self) -> PostgresWorkflowStore:
        """The workflow tables of this database, on its connections."""
        from sagakit.adapters.store.workflow_postgres import (  # noqa: PLC0415 - on use
            PostgresWorkflowStore,
        )

        return PostgresWorkflowStore(self.database)

    def notification_store(self) -> PostgresNotificationStore:
        """The notifications for hooks of this database, on its connections."""
        from sagakit.adapters.store.notification_postgres import (  # noqa: PLC0415 - on use
            PostgresNotificationStore,
        )

        return PostgresNotificationStore(self.database)

    async def listen_lock_releases(self, wake: Callable[[], None]) -> StopListening:
        """See :class:`~sagakit.ports.locks.LockReleases`: ``LISTEN`` on the
        channel the lock tables' triggers notify (migration 0019)."""
        return await self.database.listen(LOCK_CHANNEL, wake)

    # -- writes ------------------------------------------------------------

    async def create_one(self, create: Create) -> Created:
        record = create.record
        about = f"saga {record.saga_id}: create"
        try:
            row = await self._fetchrow(
                about, *_create_call(create, bool(create.outbox))
            )
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, UniqueViolation) and cause.table_name == _SAGAS:
                status = await self._status_of(record.saga_id)
                raise rows.saga_exists(record.saga_id, status) from cause
            raise
        self.database.commits += 1
        return await self._created(create, row)

    async def create_many(self, creates: Sequence[Create]) -> list[Created | Exception]:
        """See :class:`~sagakit.ports.store.GroupSaves`: one round trip and
        one transaction; one statement for creates of distinct sagas without
        an outbox, else one per create, pipelined."""
        if not creates:
            return []
        about = f"creating {len(creates)} sagas"
        outbox = any(c.outbox for c in creates)
        if not outbox and _distinct(creates):
            found = await self._fetch(about, "create_sagas", *_creates_arrays(creates))
        else:
            calls = [_create_call(c, outbox) for c in creates]
            found = await self.database.fetchmany(
                about, calls[0][0], [c[1:] for c in calls]
            )
        self.database.commits += 1
        results: list[Created | Exception] = []
        for create, row in zip(creates, found, strict=True):
            try:
                results.append(await self._created(create, row))
            except SagaAlreadyExists as exc:
                results.append(exc)
        return results

    async def _created(self, create: Create, row: Any) -> Created:
        """What the create whose statement returned ``row`` did: inserted,
        or found its idempotency key or its saga id taken (see ``taken``)."""
        if row is not None and row["created"]:
            return Created(create.record, True)
        return await self.taken(create)

    async def save_one(self, save: Save, locks: LockChange | None) -> None:
        messaging = bool(save.outbox) or save.inbox is not None
        if locks:
            await self._save_with_locks(save, messaging, locks)
            return
        row = await self._fetchrow(
            f"saga {save.record.saga_id}: save", *_save_call(save, messaging)
        )
        problem = _save_problem(save, row)
        if problem is not None:
            raise problem
        self.database.commits += 1

    async def _save_with_locks(
        self, save: Save, messaging: bool, change: LockChange
    ) -> None:
        """``save`` and ``change`` in one transaction, serialised with the
        other lock changes (see ``lock_serialise``); what refuses either
        rolls both back."""
        sql = self.database.sql
        saga_id = save.record.saga_id
        async with self.database.transaction(f"saga {saga_id}: save") as conn:

            async def run(query: str, *args: Any) -> list[Any]:
                return list(await conn.fetch(sql(query), *args))

            await conn.execute(sql("lock_serialise"))
            query, *args = _save_call(save, messaging)
            problem = _save_problem(save, await conn.fetchrow(sql(query), *args))
            if problem is not None:
                raise problem
            await apply_change(run, saga_id, change, as_array=_as_list, now=None)

    async def save_many(self, saves: Sequence[Save]) -> list[Exception | None]:
        """See :class:`~sagakit.ports.store.GroupSaves`: one round trip and
        one transaction. Saves of distinct sagas without outbox or inbox
        (the in-process sagas' transitions) are one statement, which the
        server runs for ~40% of the CPU of one per save; otherwise one
        statement per save, pipelined in one implicit transaction."""
        if not saves:
            return []
        # one statement text for the batch: the messaging one if any needs it
        messaging = any(s.outbox or s.inbox is not None for s in saves)
        if not messaging and _distinct(saves):
            return await self._save_set(saves)
        calls = [_save_call(s, messaging) for s in saves]
        found = await self.database.fetchmany(
            f"saving {len(saves)} sagas", calls[0][0], [c[1:] for c in calls]
        )
        self.database.commits += 1
        return [_save_problem(s, row) for s, row in zip(saves, found, strict=True)]

    async def _save_set(self, saves: Sequence[Save]) -> list[Exception | None]:
        """Saves of distinct sagas with no messaging as one statement
        (``save_sagas``), whose rows come in the order of ``saves``."""
        found = await self._fetch(
            f"saving {len(saves)} sagas", "save_sagas", *_saves_arrays(saves)
        )
        self.database.commits += 1
        return [_save_problem(s, row) for s, row in zip(saves, found, strict=True)]

    async def write(self, about: str, query: str, *args: Any) -> list[Any]:
        """One statement, its own transaction: its rows (counted)."""
        found = await self._fetch(about, query, *args)
        self.database.commits += 1
        return found
