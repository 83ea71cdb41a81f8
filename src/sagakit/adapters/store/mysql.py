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

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sagakit.adapters.store import rows
from sagakit.adapters.store.inbox import MySQLInbox
from sagakit.adapters.store.locks_sql import LockReads, apply_change
from sagakit.adapters.store.mysql_database import MySQLDatabase, OnMySQL, Step
from sagakit.adapters.store.reads import SagaReads
from sagakit.adapters.store.rows import dumps
from sagakit.adapters.store.sagas_sql import SqlSagas, save_problem
from sagakit.errors import SagaAlreadyExists
from sagakit.ports.locks import LockChange
from sagakit.ports.store import (
    Create,
    Created,
    HistoryEntry,
    OutboxMessage,
    Save,
)
from sagakit.ports.writes import RecordWrites

if TYPE_CHECKING:  # made when asked for: a saga store's reads need none
    from sagakit.adapters.store.event_mysql import MySQLEventStore
    from sagakit.adapters.store.notification_mysql import MySQLNotificationStore
    from sagakit.adapters.store.workflow_mysql import MySQLWorkflowStore

__all__ = ["MySQLDatabase", "MySQLStore"]

Steps = list[Step]


def _lease(owner: str | None, lease: float | None) -> tuple[str | None, float | None]:
    """Owner and lease seconds to store, or ``(None, None)`` to leave them."""
    if owner is None or lease is None:
        return None, None
    return owner, lease


def _rows(
    saga_id: str, history: Sequence[HistoryEntry], outbox: Sequence[OutboxMessage]
) -> Steps:
    """The blocks that write the history lines and outbox messages of a
    transition of ``saga_id`` (each only if the saga was written). A line of
    another saga raises ``StoreError`` before anything is sent: the foreign
    key would file it under that saga."""
    lines = rows.history_rows(rows.own_lines(saga_id, history))
    steps: Steps = [("history_row", row) for row in lines]
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
        *_rows(record.saga_id, create.history, create.outbox),
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
        *_rows(record.saga_id, save.history, save.outbox),
        ("saved", (*received, save.expected_version)),
    ]


def _save_problem(save: Save, row: Sequence[Any]) -> Exception | None:
    """What the save whose block returned ``row`` (saved, found, duplicate)
    raises, if anything."""
    saved, found, duplicate = row
    return save_problem(
        save, saved=bool(saved), found=bool(found), duplicate=bool(duplicate)
    )


class MySQLStore(
    OnMySQL,
    MySQLInbox,
    SagaReads[MySQLDatabase],
    LockReads[MySQLDatabase],
    SqlSagas[MySQLDatabase],
    RecordWrites,
):
    """A :class:`~sagakit.ports.store.SagaStore` on MySQL or MariaDB.

    Open it with ``await MySQLStore.connect(url)`` (it owns the database it
    opens), or compose an open :class:`MySQLDatabase` shared with other
    stores (``close`` leaves it open). ``statements`` counts the round trips
    store calls made, next to ``commits``.
    """

    def event_store(self) -> MySQLEventStore:
        """The choreography tables of this database, on its connections."""
        from sagakit.adapters.store.event_mysql import (  # noqa: PLC0415 - on use
            MySQLEventStore,
        )

        return MySQLEventStore(self.database)

    def workflow_store(self) -> MySQLWorkflowStore:
        """The workflow tables of this database, on its connections."""
        from sagakit.adapters.store.workflow_mysql import (  # noqa: PLC0415 - on use
            MySQLWorkflowStore,
        )

        return MySQLWorkflowStore(self.database)

    def notification_store(self) -> MySQLNotificationStore:
        """The notifications for hooks of this database, on its connections."""
        from sagakit.adapters.store.notification_mysql import (  # noqa: PLC0415 - on use
            MySQLNotificationStore,
        )

        return MySQLNotificationStore(self.database)

    # -- writes ------------------------------------------------------------

    async def create_one(self, create: Create) -> Created:
        ((row,),) = await self.database.script(
            f"saga {create.record.saga_id}: create", _create_steps(create)
        )
        if row[0]:
            return Created(create.record, True)
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

    async def save_one(self, save: Save, locks: LockChange | None) -> None:
        if locks:
            await self._save_with_locks(save, locks)
            return
        ((row,),) = await self.database.script(
            f"saga {save.record.saga_id}: save", _save_steps(save), counted=False
        )
        problem = _save_problem(save, row)
        if problem is not None:
            raise problem
        self.database.commits += 1

    async def _save_with_locks(self, save: Save, change: LockChange) -> None:
        """``save`` and ``change`` in one transaction, serialised with the
        other lock changes (``lock_serialise``); what refuses either rolls
        both back."""
        database, saga_id = self.database, save.record.saga_id
        async with database.transaction(f"saga {saga_id}: save") as conn:

            async def run(query: str, *args: Any) -> list[Any]:
                found, _ = await database.run(conn, query, *args)
                return found[-1] if found else []

            await run("lock_serialise")
            for query, args in _save_steps(save):
                row = await run(query, *args)
            problem = _save_problem(save, row[0])
            if problem is not None:
                raise problem
            await apply_change(run, saga_id, change, as_array=dumps, now=None)

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

    async def write(self, about: str, query: str, *args: Any) -> list[Any]:
        """The block in a transaction of its own: its rows (counted)."""
        return await self.database.write(about, query, *args)
