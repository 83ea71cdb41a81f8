"""The saga store on MySQL 8 or MariaDB 10.6+ (``mysql://``, ``mariadb://``).

It composes a :class:`~sagakit.adapters.store.mysql_database.MySQLDatabase`
(pool, named queries, migrations), which the workflow and event stores of
the same database may share. Every write is one transaction in one round
trip: the statements of its named block go together, the later ones reading
what the earlier ones found from session variables. Claims take rows with
``FOR UPDATE SKIP LOCKED``, in index order; saves lock the saga's row and
compare its version. "Now", for leases, is the database clock.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sagakit.adapters.store import rows
from sagakit.adapters.store.event_mysql import MySQLEventStore
from sagakit.adapters.store.inbox import MySQLInbox
from sagakit.adapters.store.mysql_database import MySQLDatabase, OnMySQL, Step
from sagakit.adapters.store.notification_mysql import MySQLNotificationStore
from sagakit.adapters.store.reads import SagaReads
from sagakit.adapters.store.rows import dumps, unique_ids
from sagakit.adapters.store.workflow_mysql import MySQLWorkflowStore
from sagakit.errors import SagaAlreadyExists, StoreError
from sagakit.ports.locks import LockChange, LockHolder, LockTable
from sagakit.ports.store import (
    Create,
    Created,
    HistoryEntry,
    InboxEntry,
    Lease,
    OutboxMessage,
    SagaRecord,
    Save,
)

__all__ = ["MySQLDatabase", "MySQLStore"]

Steps = list[Step]


def _lease(owner: str | None, lease: float | None) -> tuple[str | None, float | None]:
    """Owner and lease seconds to store, or ``(None, None)`` to leave them."""
    if owner is None or lease is None:
        return None, None
    return owner, lease


def _rows(history: Sequence[HistoryEntry], outbox: Sequence[OutboxMessage]) -> Steps:
    """The blocks that write a transition's history lines and outbox
    messages (each only if the saga was written)."""
    steps: Steps = [("history_row", row) for row in rows.history_rows(history)]
    steps += [
        (
            "outbox_row",
            (
                m.message_id,
                m.destination,
                m.body,
                m.saga_id,
                m.available_at,
                m.held_by,
                m.hold,
            ),
        )
        for m in outbox
    ]
    return steps


def _create_steps(create: Create) -> Steps:
    """The blocks of one create; the last answers whether it inserted."""
    record = create.record
    insert = (
        *rows.new_saga(record),
        *_lease(create.owner, create.lease),
        None,
        record.deadline,
        record.definition_version,
        record.fingerprint,
    )
    return [
        ("create_saga", insert),
        *_rows(create.history, create.outbox),
        ("created", ()),
    ]


def _save_steps(save: Save) -> Steps:
    """The blocks of one save; the last says what it did."""
    record, inbox = save.record, save.inbox
    update = (
        record.saga_id,
        *rows.saga_changes(record),
        save.expected_version,
        *_lease(save.owner, save.lease),
        record.deadline,
        record.definition_version,
        record.fingerprint,
    )
    first: Step = ("save_saga", update)
    received: tuple[str | None, str | None] = (None, None)
    if inbox is not None:
        received = (inbox.consumer, inbox.message_id)
        first = ("save_saga_received", (*update, *received))
    return [
        first,
        *_rows(save.history, save.outbox),
        ("saved", (*received, save.expected_version)),
    ]


def _save_problem(save: Save, row: Sequence[Any]) -> Exception | None:
    """What the save whose block returned ``row`` (saved, found, duplicate)
    raises, if anything."""
    saved, found, duplicate = row
    if saved:
        return None
    saga_id = save.record.saga_id
    if not found:
        return rows.saga_not_found(saga_id)
    if save.inbox is not None and duplicate:
        return rows.consumed_before(saga_id, save.inbox)
    return rows.stale_saga(saga_id, save.expected_version)


NO_LOCKS = (
    "semantic locks (Step(..., locks=...)) are not supported on the MySQL "
    "store yet: use SQLite or PostgreSQL for sagas that take them"
)


class MySQLStore(OnMySQL, MySQLInbox, SagaReads[MySQLDatabase]):
    """A :class:`~sagakit.ports.store.SagaStore` on MySQL or MariaDB.

    Open it with ``await MySQLStore.connect(url)`` (it owns the database it
    opens), or compose an open :class:`MySQLDatabase` shared with other
    stores (``close`` leaves it open). ``statements`` counts the round trips
    store calls made, next to ``commits``.
    """

    supports_locks = False
    """Semantic locks are not built on MySQL yet: a save that takes one is a
    ``StoreError`` saying so (nothing is written)."""

    def event_store(self) -> MySQLEventStore:
        """The choreography tables of this database, on its connections."""
        return MySQLEventStore(self.database)

    def workflow_store(self) -> MySQLWorkflowStore:
        """The workflow tables of this database, on its connections."""
        return MySQLWorkflowStore(self.database)

    def notification_store(self) -> MySQLNotificationStore:
        """The notifications for hooks of this database, on its connections."""
        return MySQLNotificationStore(self.database)

    # -- writes ------------------------------------------------------------

    async def create(
        self,
        record: SagaRecord,
        history: Sequence[HistoryEntry],
        *,
        owner: str | None = None,
        lease: float | None = None,
        outbox: Sequence[OutboxMessage] = (),
    ) -> Created:
        create = Create(record, history, owner, lease, outbox)
        ((row,),) = await self.database.script(
            f"saga {record.saga_id}: create", _create_steps(create)
        )
        if row[0]:
            return Created(record, True)
        return await self.taken(create)

    async def create_many(self, creates: Sequence[Create]) -> list[Created | Exception]:
        """See :class:`~sagakit.ports.store.GroupSaves`: one transaction,
        one round trip."""
        if not creates:
            return []
        found = await self.database.script(
            f"creating {len(creates)} sagas",
            [step for c in creates for step in _create_steps(c)],
        )
        results: list[Created | Exception] = []
        for create, ((created,),) in zip(creates, found, strict=True):
            if created:
                results.append(Created(create.record, True))
                continue
            try:
                results.append(await self.taken(create))
            except SagaAlreadyExists as exc:
                results.append(exc)
        return results

    async def save(
        self,
        record: SagaRecord,
        expected_version: int,
        history: Sequence[HistoryEntry],
        *,
        owner: str | None = None,
        lease: float | None = None,
        outbox: Sequence[OutboxMessage] = (),
        inbox: InboxEntry | None = None,
        locks: LockChange | None = None,
    ) -> None:
        if locks:
            raise StoreError(NO_LOCKS)
        save = Save(record, expected_version, history, owner, lease, outbox, inbox)
        ((row,),) = await self.database.script(
            f"saga {record.saga_id}: save", _save_steps(save), counted=False
        )
        problem = _save_problem(save, row)
        if problem is not None:
            raise problem
        self.database.commits += 1

    async def save_many(self, saves: Sequence[Save]) -> list[Exception | None]:
        """See :class:`~sagakit.ports.store.GroupSaves`: one transaction,
        one round trip; a refused save writes nothing of its own."""
        if not saves:
            return []
        found = await self.database.script(
            f"saving {len(saves)} sagas",
            [step for s in saves for step in _save_steps(s)],
        )
        return [_save_problem(s, rs[0]) for s, rs in zip(saves, found, strict=True)]

    # -- semantic locks: not on MySQL yet (a save that takes one is refused)

    async def lock_holders(self, keys: Collection[str]) -> dict[str, LockHolder]:
        return {}  # nobody can hold one here

    async def list_locks(
        self,
        *,
        prefix: str | None = None,
        saga_id: str | None = None,
        limit: int = 100,
    ) -> LockTable:
        return LockTable([], [])

    async def locks_ready(self, saga_ids: Collection[str]) -> list[str]:
        return []

    # -- leases ------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        saga_names: Collection[str],
        *,
        lease: float,
        limit: int = 100,
        gone: Collection[str] = (),
        after: str | None = None,
    ) -> list[SagaRecord]:
        names, dead = dumps(list(saga_names)), dumps(list(gone))
        found = await self.database.write(
            f"claim by {owner!r}",
            "claim_sagas",
            owner,
            names,
            lease,
            limit,
            dead,
            after,
        )
        return [rows.saga_record(r) for r in found]

    async def stranded(
        self,
        saga_names: Collection[str],
        keys: Collection[str],
        *,
        limit: int = 100,
        gone: Collection[str] = (),
    ) -> list[SagaRecord]:
        found = await self.database.fetch(
            "listing stranded sagas",
            "stranded_sagas",
            dumps(list(saga_names)),
            dumps(list(keys)),
            limit,
            dumps(list(gone)),
        )
        return [rows.saga_record(r) for r in found]

    async def mark_waiting(self, saga_id: str, reason: str) -> None:
        about = f"saga {saga_id}: mark waiting"
        await self.database.execute(about, "mark_waiting", saga_id, reason)
        self.database.commits += 1

    async def renew(
        self, owner: str, saga_ids: Collection[str], *, lease: float
    ) -> list[str]:
        ids = unique_ids(saga_ids)
        if not ids:
            return []
        found = await self.database.write(
            f"lease renewal by {owner!r}", "renew_leases", owner, dumps(ids), lease
        )
        renewed = {r[0] for r in found}
        return [saga_id for saga_id in ids if saga_id in renewed]

    async def leases(self, saga_ids: Collection[str]) -> dict[str, Lease]:
        ids = unique_ids(saga_ids)
        if not ids:
            return {}
        found = await self.database.fetch("reading leases", "saga_leases", dumps(ids))
        return {r[0]: Lease(r[1], bool(r[2]), r[3]) for r in found}

    async def lease_holders(self, saga_names: Collection[str]) -> list[str]:
        found = await self.database.fetch(
            "listing lease holders", "lease_holders", dumps(list(saga_names))
        )
        return [r[0] for r in found]

    async def release(self, owner: str, saga_ids: Collection[str]) -> None:
        ids = unique_ids(saga_ids)
        if not ids:
            return
        about = f"lease release by {owner!r}"
        await self.database.execute(about, "release_leases", owner, dumps(ids))
        self.database.commits += 1

    # -- reads -------------------------------------------------------------

    async def unfinished(
        self,
        saga_names: Collection[str] | None = None,
        limit: int = 1000,
        *,
        after: str | None = None,
    ) -> list[str]:
        names = None if saga_names is None else dumps(list(saga_names))
        found = await self.database.fetch(
            "listing unfinished sagas", "unfinished_sagas", names, after, limit
        )
        return [r[0] for r in found]

    async def live_definitions(self) -> dict[tuple[str, int, str | None], int]:
        found = await self.database.fetch(
            "counting live definitions", "live_definitions"
        )
        return {(r[0], r[1], r[2]): int(r[3]) for r in found}

    async def due_deadlines(
        self, saga_names: Collection[str], *, limit: int = 100
    ) -> list[str]:
        found = await self.database.fetch(
            "listing due deadlines", "due_deadlines", dumps(list(saga_names)), limit
        )
        return [r[0] for r in found]

    # -- messaging ---------------------------------------------------------

    async def claim_outbox(
        self, owner: str, *, lease: float, limit: int = 100
    ) -> list[OutboxMessage]:
        found = await self.database.write(
            f"outbox claim by {owner!r}", "claim_outbox", owner, lease, limit
        )
        return [rows.outbox_message(r) for r in found]

    async def mark_sent(self, message_ids: Collection[str]) -> None:
        ids = unique_ids(message_ids)
        if not ids:
            return
        await self.database.execute(
            "marking messages sent", "delete_outbox", dumps(ids)
        )
        self.database.commits += 1

    async def release_outbox(self, owner: str | None = None) -> int:
        found = await self.database.write(
            "releasing outbox holds", "release_outbox", owner
        )
        return int(found[0][0])
