"""A store that keeps everything in this process: tests and benchmarks.

Records handed to ``create``/``save`` are kept as they are (the orchestrator
builds a fresh one per save); ``get`` returns a copy.

It honours the same contract as the durable stores (versions, idempotency keys,
append-only history, a write refused with a history line of another saga) but
loses everything when the process ends.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from sagakit.adapters.store import rows
from sagakit.adapters.store.locks_memory import MemoryLocks
from sagakit.adapters.store.notification_memory import (
    InMemoryNotificationStore,
    NotificationLedger,
)
from sagakit.engine.state import SagaStatus
from sagakit.ports.locks import LockChange, LockHolder, LockTable
from sagakit.ports.store import (
    Create,
    Created,
    HistoryEntry,
    Lease,
    OutboxMessage,
    SagaRecord,
    Save,
)
from sagakit.ports.writes import RecordWrites

if TYPE_CHECKING:
    from sagakit.adapters.store.event_memory import InMemoryEventStore


class InMemoryStore(RecordWrites):
    """A :class:`~sagakit.ports.store.SagaStore` in dictionaries."""

    def __init__(self) -> None:
        self.commits = 0
        self._sagas: dict[str, SagaRecord] = {}
        self._keys: dict[tuple[str, str], str] = {}
        self._history: dict[str, list[HistoryEntry]] = {}
        self._leases: dict[str, tuple[str, float]] = {}  # saga id -> owner, until
        self._outbox: dict[str, tuple[OutboxMessage, float]] = {}  # -> written at
        self._held: dict[str, tuple[str, float]] = {}  # message id -> owner, until
        self._inbox: dict[tuple[str, str], bytes | None] = {}  # -> reply
        self._inbox_of: dict[str, list[tuple[str, str]]] = {}  # saga id -> keys
        self._locks = MemoryLocks()
        self.notifications = NotificationLedger()  # what the SQL triggers write
        self._events: InMemoryEventStore | None = None

    def event_store(self) -> InMemoryEventStore:
        """Choreography tables whose inbox is this store's: the same ones on
        every call, as a database's are."""
        from sagakit.adapters.store.event_memory import (  # noqa: PLC0415 - a cycle
            InMemoryEventStore,
        )

        if self._events is None:
            self._events = InMemoryEventStore(self)
        return self._events

    def notification_store(self) -> InMemoryNotificationStore:
        """Notifications for hooks, kept beside these instances."""
        return InMemoryNotificationStore(self)

    def _lease(self, saga_id: str, owner: str | None, lease: float | None) -> None:
        if owner is not None and lease is not None:
            self._leases[saga_id] = (owner, time.time() + lease)

    def _write_outbox(self, outbox: Sequence[OutboxMessage]) -> None:
        now = time.time()
        for message in outbox:
            if message.message_id in self._outbox:
                continue
            if message.held_by is not None and message.hold is not None:
                self._held[message.message_id] = (message.held_by, now + message.hold)
            kept = replace(message, held_by=None, hold=None)  # as a database reads it
            self._outbox[message.message_id] = (kept, now)

    async def create_one(self, create: Create) -> Created:
        record, history = create.record, create.history
        owner, lease, outbox = create.owner, create.lease, create.outbox
        if record.idempotency_key is not None:
            existing = self._keys.get((record.saga_name, record.idempotency_key))
            if existing is not None:
                return Created(_frozen(self._sagas[existing]), False)
        taken = self._sagas.get(record.saga_id)
        if taken is not None:
            raise rows.saga_exists(record.saga_id, taken.status.value)
        rows.own_lines(record.saga_id, history)
        self._sagas[record.saga_id] = record
        if record.idempotency_key is not None:
            self._keys[(record.saga_name, record.idempotency_key)] = record.saga_id
        self._history[record.saga_id] = list(history)
        self.notifications.written(None, record)
        self._lease(record.saga_id, owner, lease)
        self._write_outbox(outbox)
        self.commits += 1
        return Created(record, True)

    async def save_one(self, save: Save, locks: LockChange | None) -> None:
        record, history, inbox = save.record, save.history, save.inbox
        owner, lease, outbox = save.owner, save.lease, save.outbox
        expected_version = save.expected_version
        current = self._sagas.get(record.saga_id)
        if current is None:
            raise rows.saga_not_found(record.saga_id)
        received = None if inbox is None else (inbox.consumer, inbox.message_id)
        if inbox is not None and received in self._inbox:
            raise rows.consumed_before(record.saga_id, inbox)
        if current.version != expected_version:
            raise rows.stale_saga(record.saga_id, expected_version)
        rows.own_lines(record.saga_id, history)
        if locks:  # first: a refusal writes nothing
            self._locks.apply(record.saga_id, locks, time.time())
        self._sagas[record.saga_id] = (  # a save clears the waiting reason
            record if record.waiting is None else replace(record, waiting=None)
        )
        self._history[record.saga_id].extend(history)
        self.notifications.written(current, record)
        self._lease(record.saga_id, owner, lease)
        self._write_outbox(outbox)
        if received is not None:
            self._inbox[received] = None
            self._inbox_of.setdefault(record.saga_id, []).append(received)
        self.commits += 1

    def forget(self, saga_ids: Collection[str]) -> None:
        """Drop these instances and everything kept about them (history,
        lease, idempotency key, outbox, the replies they consumed): for a
        long-lived process that bounds what it keeps."""
        for saga_id in saga_ids:
            record = self._sagas.pop(saga_id, None)
            if record is not None and record.idempotency_key is not None:
                self._keys.pop((record.saga_name, record.idempotency_key), None)
            self._history.pop(saga_id, None)
            self._leases.pop(saga_id, None)
            for key in self._inbox_of.pop(saga_id, ()):
                self._inbox.pop(key, None)
        gone = set(saga_ids)
        for message_id, (message, _) in list(self._outbox.items()):
            if message.saga_id in gone:
                del self._outbox[message_id]
                self._held.pop(message_id, None)

    async def get(self, saga_id: str) -> SagaRecord:
        try:
            return _frozen(self._sagas[saga_id])
        except KeyError:
            raise rows.saga_not_found(saga_id) from None

    async def history(self, saga_id: str) -> list[HistoryEntry]:
        return list(self._history.get(saga_id, ()))

    async def list_sagas(
        self,
        *,
        status: SagaStatus | None = None,
        saga_name: str | None = None,
        limit: int = 50,
        created_before: float | None = None,
        waiting: bool = False,
        before_id: str | None = None,
    ) -> list[SagaRecord]:
        wanted = None if status is None else SagaStatus(status)
        cursor = None if created_before is None else (created_before, before_id or "")
        found = [
            r
            for r in self._sagas.values()
            if (wanted is None or r.status is wanted)
            and (saga_name is None or r.saga_name == saga_name)
            and (cursor is None or (r.created_at, r.saga_id) < cursor)
            and (not waiting or (r.waiting is not None and not r.status.terminal))
        ]
        return _newest(found)[:limit]

    async def find_by_key(
        self, idempotency_key: str, limit: int = 20
    ) -> list[SagaRecord]:
        found = [
            r for r in self._sagas.values() if r.idempotency_key == idempotency_key
        ]
        return _newest(found)[:limit]

    async def search_context(
        self, text: str, *, limit: int = 50, scan: int = 10_000
    ) -> list[SagaRecord]:
        wanted = text.lower()
        newest = _newest(self._sagas.values())[:scan]
        return [r for r in newest if wanted in rows.dumps(r.context).lower()][:limit]

    async def count_by_status(
        self, saga_name: str | None = None
    ) -> dict[SagaStatus, int]:
        counts: dict[SagaStatus, int] = {}
        for r in self._sagas.values():
            if saga_name is None or r.saga_name == saga_name:
                counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        return sorted(i for i in self._sagas if i.startswith(prefix))[:limit]

    def _after(self, saga_id: str | None) -> tuple[float, str] | None:
        """Where in claim order ``saga_id`` is (None: before the first)."""
        if saga_id is None:
            return None
        record = self._sagas.get(saga_id)
        # an id not stored has no place: nothing comes after it
        return (float("inf"), "") if record is None else _order(record)

    async def unfinished(
        self,
        saga_names: Collection[str] | None = None,
        limit: int = 1000,
        *,
        after: str | None = None,
    ) -> list[str]:
        cursor = self._after(after)
        found = sorted(
            (
                r
                for r in self._sagas.values()
                if not r.status.terminal
                and (saga_names is None or r.saga_name in saga_names)
                and (cursor is None or _order(r) > cursor)
            ),
            key=_order,
        )
        return [r.saga_id for r in found[:limit]]

    def _free(self, saga_id: str, now: float, gone: Collection[str]) -> bool:
        held = self._leases.get(saga_id)
        return held is None or held[1] < now or held[0] in gone

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
        now = time.time()
        cursor = self._after(after)
        due = sorted(
            (
                r
                for r in self._sagas.values()
                if not r.status.terminal
                and (r.saga_name in saga_names or r.definition_key in saga_names)
                and self._free(r.saga_id, now, gone)
                and (cursor is None or _order(r) > cursor)
            ),
            key=_order,
        )[:limit]
        claimed = []
        for r in due:
            bumped = replace(r, version=r.version + 1, waiting=None)
            self._sagas[r.saga_id] = bumped
            held = self._leases.get(r.saga_id)
            self._leases[r.saga_id] = (owner, now + lease)
            taken = None if held is None else held[0]
            claimed.append(replace(_frozen(bumped), previous_owner=taken))
        self.commits += 1
        return claimed

    async def stranded(
        self,
        saga_names: Collection[str],
        keys: Collection[str],
        *,
        limit: int = 100,
        gone: Collection[str] = (),
    ) -> list[SagaRecord]:
        now = time.time()
        found = sorted(
            (
                r
                for r in self._sagas.values()
                if not r.status.terminal
                and r.saga_name in saga_names
                and r.definition_key not in keys
                and r.waiting is None
                and self._free(r.saga_id, now, gone)
            ),
            key=lambda r: (r.created_at, r.saga_id),
        )
        return [_frozen(r) for r in found[:limit]]

    async def mark_waiting(self, saga_id: str, reason: str) -> None:
        current = self._sagas.get(saga_id)
        if current is not None and not current.status.terminal:
            self._sagas[saga_id] = replace(current, waiting=reason)
            self.commits += 1

    async def live_definitions(self) -> dict[tuple[str, int, str | None], int]:
        counts: dict[tuple[str, int, str | None], int] = {}
        for r in self._sagas.values():
            if not r.status.terminal:
                key = (r.saga_name, r.definition_version, r.fingerprint)
                counts[key] = counts.get(key, 0) + 1
        return counts

    async def renew(
        self, owner: str, saga_ids: Collection[str], *, lease: float
    ) -> list[str]:
        if not saga_ids:
            return []
        until = time.time() + lease
        renewed = []
        for saga_id in dict.fromkeys(saga_ids):
            held = self._leases.get(saga_id)
            record = self._sagas.get(saga_id)
            if held and held[0] == owner and record and not record.status.terminal:
                self._leases[saga_id] = (owner, until)
                renewed.append(saga_id)
        self.commits += 1
        return renewed

    async def leases(self, saga_ids: Collection[str]) -> dict[str, Lease]:
        now = time.time()
        found = {}
        for saga_id in saga_ids:
            record = self._sagas.get(saga_id)
            if record is None or record.status.terminal:
                continue
            owner, until = self._leases.get(saga_id, (None, None))
            live = until is not None and until >= now
            found[saga_id] = Lease(owner, live, record.version)
        return found

    async def lease_holders(self, saga_names: Collection[str]) -> list[str]:
        holders = (
            self._leases[r.saga_id][0]
            for r in self._sagas.values()
            if not r.status.terminal
            and r.saga_name in saga_names
            and r.saga_id in self._leases
        )
        return list(dict.fromkeys(holders))

    async def release(self, owner: str, saga_ids: Collection[str]) -> None:
        if not saga_ids:
            return
        for saga_id in saga_ids:
            held = self._leases.get(saga_id)
            if held and held[0] == owner:
                del self._leases[saga_id]
        self.commits += 1

    # -- messaging ---------------------------------------------------------

    async def claim_outbox(
        self, owner: str, *, lease: float, limit: int = 100
    ) -> list[OutboxMessage]:
        now = time.time()

        def free(message_id: str) -> bool:
            held = self._held.get(message_id)
            return held is None or held[1] < now

        due = sorted(
            (message.available_at, written, message_id)
            for message_id, (message, written) in self._outbox.items()
            if message.available_at <= now and free(message_id)
        )[:limit]
        for _, _, message_id in due:
            self._held[message_id] = (owner, now + lease)
        self.commits += 1
        return [self._outbox[message_id][0] for _, _, message_id in due]

    async def mark_sent(self, message_ids: Collection[str]) -> None:
        if not message_ids:
            return
        for message_id in message_ids:
            self._outbox.pop(message_id, None)
            self._held.pop(message_id, None)
        self.commits += 1

    async def release_outbox(self, owner: str | None = None) -> int:
        released = [
            message_id
            for message_id, (holder, _until) in self._held.items()
            if owner is None or holder == owner
        ]
        for message_id in released:
            del self._held[message_id]
        self.commits += 1
        return len(released)

    async def due_deadlines(
        self, saga_names: Collection[str], *, limit: int = 100
    ) -> list[str]:
        now = time.time()
        due = sorted(
            (r.deadline, r.saga_id)
            for r in self._sagas.values()
            if r.deadline is not None
            and r.deadline <= now
            and not r.status.terminal
            and r.saga_name in saga_names
        )
        return [saga_id for _, saga_id in due[:limit]]

    # -- semantic locks ----------------------------------------------------

    async def lock_holders(self, keys: Collection[str]) -> dict[str, LockHolder]:
        held = self._locks.holders
        return {key: held[key] for key in keys if key in held}

    async def list_locks(
        self,
        *,
        prefix: str | None = None,
        saga_id: str | None = None,
        limit: int = 100,
    ) -> LockTable:
        return self._locks.table(prefix, saga_id, limit)

    async def locks_ready(self, saga_ids: Collection[str]) -> list[str]:
        return self._locks.ready(saga_ids)

    async def inbox_reply(self, consumer: str, message_id: str) -> bytes | None:
        if (consumer, message_id) not in self._inbox:
            return None
        return self._inbox[(consumer, message_id)] or b""

    async def record_inbox(
        self, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        if (consumer, message_id) in self._inbox:
            return False
        self._inbox[(consumer, message_id)] = reply
        self.commits += 1
        return True

    async def close(self) -> None:
        return None


def _order(record: SagaRecord) -> tuple[float, str]:
    """Where a record comes in claim order: oldest first, then by id."""
    return (record.created_at, record.saga_id)


def _newest(records: Iterable[SagaRecord]) -> list[SagaRecord]:
    """``records`` newest first: the order of ``list_sagas``."""
    return sorted(records, key=_order, reverse=True)


def _frozen(record: SagaRecord) -> SagaRecord:
    """A copy whose context cannot be changed through another reference."""
    return replace(record, context=copy.deepcopy(record.context))
