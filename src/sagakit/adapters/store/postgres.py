"""The server store: PostgreSQL through an asyncpg connection pool.

Every write is one statement, so one round trip and one commit: CTEs do the
conditional update (or the insert) and append the history, which travels as a
single jsonb array. "Now", for leases, is the database clock, so workers on
hosts with skewed clocks agree on who owns what.

Connections keep no session state (advisory locks are transaction-scoped), so
the pool skips asyncpg's reset query and a released connection costs no round
trip; an open transaction is still rolled back by asyncpg itself.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from sagakit.adapters.store.pg_connections import Connections
from sagakit.adapters.store.sql import Migration, migrations, queries
from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus
from sagakit.errors import (
    ConcurrencyError,
    DuplicateMessage,
    SagaNotFound,
    StoreError,
)
from sagakit.ports.store import HistoryEntry, InboxEntry, OutboxMessage, SagaRecord

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the PostgreSQL store needs asyncpg: pip install 'sagakit[postgres]'"
    ) from exc

logger = logging.getLogger(__name__)

_Q = queries("postgres")
_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
_Row = asyncpg.Record
_POOL_MAX = 4


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def describe(dsn: str) -> str:
    """``host:port/database`` of a DSN, without credentials (for messages)."""
    try:
        parts = urlsplit(dsn)
        port = parts.port or 5432
    except ValueError:
        return "<unparsable DSN>"
    database = unquote(parts.path.lstrip("/")) or parts.username or "postgres"
    return f"{parts.hostname or 'localhost'}:{port}/{database}"


def _reason(exc: BaseException) -> str:
    """One line saying what the driver reported."""
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, OSError)
        and (exc.errno == errno.ECONNREFUSED or "Connect call failed" in str(exc))
    ):
        return "connection refused (is the server running?)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _both(owner: str | None, lease: float | None) -> tuple[str | None, float | None]:
    """Owner and lease seconds to store, or ``(None, None)`` to leave them."""
    if owner is None or lease is None:
        return None, None
    return owner, lease


def _history_json(history: Sequence[HistoryEntry]) -> str:
    return _dumps(
        [
            {
                "saga_id": h.saga_id,
                "step": h.step,
                "kind": h.kind,
                "attempt": h.attempt,
                "outcome": h.outcome,
                "result": h.result,
                "error": None if h.error is None else h.error.to_dict(),
                "started_at": h.started_at,
                "finished_at": h.finished_at,
            }
            for h in history
        ]
    )


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


def _record(row: _Row) -> SagaRecord:
    return SagaRecord(
        saga_id=row["saga_id"],
        saga_name=row["saga_name"],
        status=SagaStatus(row["status"]),
        version=row["version"],
        state=SagaState.from_dict(json.loads(row["state"])),
        context=json.loads(row["context"]),
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deadline=row["deadline"],
    )


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo (see the module docstring)."""


class PostgresStore:
    """A :class:`~sagakit.ports.store.SagaStore` on PostgreSQL.

    Open it with ``await PostgresStore.connect(dsn)``. ``statements`` counts
    the statements (round trips) store calls sent, next to ``commits``.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, where: str, lane: Connections | None = None
    ) -> None:
        self._pool = pool
        self._lane = lane
        self.where = where
        self.commits = 0
        self.statements = 0

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        migrate: bool = True,
    ) -> PostgresStore:
        """Open a pool on ``dsn`` and, unless ``migrate=False``, migrate."""
        where = describe(dsn)
        try:
            pool = await asyncpg.create_pool(
                dsn,
                # statements run on the lane; the pool serves migrations and
                # the event store, so it stays small (fewer server connections)
                min_size=min(min_size, _POOL_MAX),
                max_size=min(max_size, _POOL_MAX),
                reset=_keep_session,
            )
        except (*_DRIVER_ERRORS, ValueError) as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {where}: {_reason(exc)}"
            ) from exc
        store = cls(pool, where=where, lane=Connections(dsn, max_size=max_size))
        if migrate:
            try:
                await store.migrate()
            except BaseException:
                await store.close()
                raise
        return store

    # -- plumbing ----------------------------------------------------------

    def _error(self, about: str, exc: BaseException) -> StoreError:
        return StoreError(
            f"{about} failed on PostgreSQL at {self.where}: {_reason(exc)}"
        )

    async def _fetch(self, about: str, query: str, *args: Any) -> list[_Row]:
        self.statements += 1
        try:
            if self._lane is None:
                return await self._pool.fetch(_Q[query], *args)
            async with self._lane.connection() as conn:
                return await conn.fetch(_Q[query], *args)
        except _DRIVER_ERRORS as exc:
            raise self._error(about, exc) from exc

    async def _fetchrow(self, about: str, query: str, *args: Any) -> _Row | None:
        self.statements += 1
        try:
            if self._lane is None:
                return await self._pool.fetchrow(_Q[query], *args)
            async with self._lane.connection() as conn:
                return await conn.fetchrow(_Q[query], *args)
        except _DRIVER_ERRORS as exc:
            raise self._error(about, exc) from exc

    # -- schema ------------------------------------------------------------

    async def migrate(
        self, progress: Callable[[Migration], object] | None = None
    ) -> list[int]:
        """Apply pending migrations in one transaction; returns the versions
        applied. Concurrent migrators wait on an advisory lock. ``progress``
        is called after each one (``sagakit db migrate``)."""
        applied: list[int] = []
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(_Q["lock_migrations"])
                await conn.execute(_Q["create_migrations_table"])
                done = {r[0] for r in await conn.fetch(_Q["applied_migrations"])}
                for m in migrations("postgres"):
                    if m.version in done:
                        continue
                    await conn.execute(m.sql)
                    await conn.execute(_Q["record_migration"], m.version, m.name)
                    applied.append(m.version)
                    if progress is not None:
                        progress(m)
        except _DRIVER_ERRORS as exc:
            raise self._error("migration", exc) from exc
        self.commits += 1
        if applied:
            logger.info(
                "schema migrated",
                extra={
                    "action": "schema_migrated",
                    "versions": applied,
                    "db": self.where,
                },
            )
        return applied

    async def applied_migrations(self) -> list[int]:
        """Versions applied so far (none on a database sagakit never touched)."""
        exists = await self._fetchrow("listing migrations", "migrations_table_exists")
        if exists is None or not exists[0]:
            return []
        rows = await self._fetch("listing migrations", "applied_migrations")
        return [row[0] for row in rows]

    # -- writes ------------------------------------------------------------

    async def create(
        self,
        record: SagaRecord,
        history: Sequence[HistoryEntry],
        *,
        owner: str | None = None,
        lease: float | None = None,
        outbox: Sequence[OutboxMessage] = (),
    ) -> tuple[SagaRecord, bool]:
        about = f"saga {record.saga_id}: create"
        owner, lease = _both(owner, lease)
        # Without an outbox, a statement that does not touch it (cheaper).
        outbox_args: tuple[Any, ...] = ()
        if outbox:
            first, holds = _outbox_arrays(outbox)
            outbox_args = (*first, *holds)
        row = await self._fetchrow(
            about,
            "create_saga_outbox" if outbox else "create_saga",
            record.saga_id,
            record.saga_name,
            record.status.value,
            record.version,
            record.idempotency_key,
            _dumps(record.context),
            _dumps(record.state.to_dict()),
            record.state.failed_step,
            record.created_at,
            record.updated_at,
            owner,
            lease,
            _history_json(history),
            record.deadline,
            *outbox_args,
        )
        self.commits += 1
        if row is not None and row["created"]:
            return record, True
        # The key is taken by a committed row; this statement sees it.
        existing = await self._fetchrow(
            about, "find_saga_by_key", record.saga_name, record.idempotency_key
        )
        if existing is None:
            raise StoreError(
                f"saga {record.saga_id}: idempotency key {record.idempotency_key!r} "
                "is taken but its saga cannot be read"
            )
        return _record(existing), False

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
    ) -> None:
        owner, lease = _both(owner, lease)
        # Without messaging, a statement that does not touch the outbox and
        # inbox: each costs a lock and an open per call even when empty.
        messaging: tuple[Any, ...] = ()
        if outbox or inbox is not None:
            first, holds = (
                _outbox_arrays(outbox) if outbox else ((None,) * 5, (None,) * 2)
            )
            messaging = (
                *first,
                None if inbox is None else inbox.consumer,
                None if inbox is None else inbox.message_id,
                *holds,
            )
        row = await self._fetchrow(
            f"saga {record.saga_id}: save",
            "save_saga_messaging" if messaging else "save_saga",
            record.saga_id,
            record.status.value,
            record.version,
            _dumps(record.context),
            _dumps(record.state.to_dict()),
            record.state.failed_step,
            record.updated_at,
            expected_version,
            owner,
            lease,
            _history_json(history),
            record.deadline,
            *messaging,
        )
        if row is not None and row["saved"] == 1:
            self.commits += 1
            return
        if row is None or not row["found"]:
            raise SagaNotFound(f"saga {record.saga_id} does not exist")
        if inbox is not None and row["duplicate"]:
            raise DuplicateMessage(
                f"saga {record.saga_id}: message {inbox.message_id!r} was consumed "
                f"by {inbox.consumer!r} before"
            )
        raise ConcurrencyError(
            f"saga {record.saga_id}: version {expected_version} is stale; "
            "another worker saved it first"
        )

    # -- leases ------------------------------------------------------------

    async def claim(
        self, owner: str, saga_names: Collection[str], *, lease: float, limit: int = 100
    ) -> list[SagaRecord]:
        rows = await self._fetch(
            f"claim by {owner!r}", "claim_sagas", owner, list(saga_names), lease, limit
        )
        self.commits += 1
        return [_record(r) for r in rows]

    async def renew(
        self, owner: str, saga_ids: Collection[str], *, lease: float
    ) -> list[str]:
        ids = list(dict.fromkeys(saga_ids))
        if not ids:
            return []
        rows = await self._fetch(
            f"lease renewal by {owner!r}", "renew_leases", owner, ids, lease
        )
        self.commits += 1
        renewed = {r["saga_id"] for r in rows}
        return [saga_id for saga_id in ids if saga_id in renewed]

    async def release(self, owner: str, saga_ids: Collection[str]) -> None:
        ids = list(dict.fromkeys(saga_ids))
        if not ids:
            return
        await self._fetch(f"lease release by {owner!r}", "release_leases", owner, ids)
        self.commits += 1

    # -- reads -------------------------------------------------------------

    async def get(self, saga_id: str) -> SagaRecord:
        row = await self._fetchrow(f"saga {saga_id}: read", "get_saga", saga_id)
        if row is None:
            raise SagaNotFound(f"saga {saga_id} does not exist")
        return _record(row)

    async def history(self, saga_id: str) -> list[HistoryEntry]:
        rows = await self._fetch(f"saga {saga_id}: history", "get_history", saga_id)
        return [
            HistoryEntry(
                saga_id=r["saga_id"],
                step=r["step"],
                kind=r["kind"],
                attempt=r["attempt"],
                outcome=r["outcome"],
                result=None if r["result"] is None else json.loads(r["result"]),
                error=(
                    None
                    if r["error"] is None
                    else ErrorInfo.from_dict(json.loads(r["error"]))
                ),
                started_at=r["started_at"],
                finished_at=r["finished_at"],
            )
            for r in rows
        ]

    async def list_sagas(
        self,
        *,
        status: SagaStatus | None = None,
        saga_name: str | None = None,
        limit: int = 50,
        created_before: float | None = None,
    ) -> list[SagaRecord]:
        rows = await self._fetch(
            "listing sagas",
            "list_sagas",
            None if status is None else SagaStatus(status).value,
            saga_name,
            limit,
            created_before,
        )
        return [_record(r) for r in rows]

    async def count_by_status(
        self, saga_name: str | None = None
    ) -> dict[SagaStatus, int]:
        rows = await self._fetch("counting sagas", "count_by_status", saga_name)
        return {SagaStatus(r["status"]): int(r["n"]) for r in rows}

    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        rows = await self._fetch("finding ids", "ids_with_prefix", prefix, limit)
        return [r["saga_id"] for r in rows]

    async def unfinished(
        self, saga_names: Collection[str] | None = None, limit: int = 1000
    ) -> list[str]:
        names = None if saga_names is None else list(saga_names)
        rows = await self._fetch(
            "listing unfinished sagas", "unfinished_sagas", names, limit
        )
        return [r["saga_id"] for r in rows]

    # -- messaging ---------------------------------------------------------

    async def claim_outbox(
        self, owner: str, *, lease: float, limit: int = 100
    ) -> list[OutboxMessage]:
        rows = await self._fetch(
            f"outbox claim by {owner!r}", "claim_outbox", owner, lease, limit
        )
        self.commits += 1
        return [
            OutboxMessage(
                message_id=r["message_id"],
                destination=r["destination"],
                body=r["body"],
                saga_id=r["saga_id"],
                available_at=r["available_at"],
            )
            for r in rows
        ]

    async def mark_sent(self, message_ids: Collection[str]) -> None:
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return
        await self._fetch("marking messages sent", "delete_outbox", ids)
        self.commits += 1

    async def release_outbox(self, owner: str | None = None) -> int:
        rows = await self._fetch("releasing outbox holds", "release_outbox", owner)
        self.commits += 1
        return len(rows)

    async def due_deadlines(
        self, saga_names: Collection[str], *, limit: int = 100
    ) -> list[str]:
        rows = await self._fetch(
            "listing due deadlines", "due_deadlines", list(saga_names), limit
        )
        return [r["saga_id"] for r in rows]

    async def inbox_reply(self, consumer: str, message_id: str) -> bytes | None:
        row = await self._fetchrow(
            f"inbox of {consumer!r}", "inbox_reply", consumer, message_id
        )
        if row is None:
            return None
        reply: bytes | None = row["reply"]
        return b"" if reply is None else reply

    async def record_inbox(
        self, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        row = await self._fetchrow(
            f"recording message {message_id!r} for {consumer!r}",
            "record_inbox",
            consumer,
            message_id,
            reply,
        )
        self.commits += 1
        return row is not None

    async def close(self) -> None:
        try:
            if self._lane is not None:
                await self._lane.close()
            await self._pool.close()
        except _DRIVER_ERRORS as exc:
            raise self._error("closing the pool", exc) from exc

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"
