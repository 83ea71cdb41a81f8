"""The embedded default store: one SQLite file in WAL mode.

Calls run on the event loop's thread: a commit in WAL mode takes tens of
microseconds, far less than a hop to a worker thread. ``synchronous=NORMAL``
(the default here) survives a killed process; pass ``synchronous="full"`` to
survive a power cut as well, at the price of an fsync per commit.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sagakit.adapters.store.sql import Migration, migrations, queries
from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus
from sagakit.errors import (
    ConcurrencyError,
    DuplicateMessage,
    SagaNotFound,
    StoreError,
)
from sagakit.ports.store import HistoryEntry, InboxEntry, OutboxMessage, SagaRecord

logger = logging.getLogger(__name__)

_Q = queries("sqlite")
_SYNC_MODES = ("off", "normal", "full", "extra")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def split_statements(script: str) -> list[str]:
    """Split a SQL script into complete statements (trigger bodies included)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise StoreError(f"incomplete SQL statement: {buffer.strip()[:80]!r}")
    return statements


def _lease_until(
    owner: str | None, lease: float | None
) -> tuple[str | None, float | None]:
    """Owner and lease end to store, or ``(None, None)`` to leave them alone."""
    if owner is None or lease is None:
        return None, None
    return owner, time.time() + lease


class SQLiteStore:
    """A :class:`~sagakit.ports.store.SagaStore` in one SQLite file.

    The schema is migrated when the store opens (unless ``migrate=False``).
    ``path=":memory:"`` keeps everything in memory (tests, benchmarks).
    """

    def __init__(
        self,
        path: str | Path = "sagakit.db",
        *,
        synchronous: str = "normal",
        migrate: bool = True,
    ) -> None:
        if synchronous.lower() not in _SYNC_MODES:
            raise StoreError(
                f"synchronous must be one of {_SYNC_MODES}, got {synchronous!r}"
            )
        self.path = str(path)
        self.commits = 0
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # checked against _SYNC_MODES above; PRAGMA takes no bound parameters
            self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open SQLite database {self.path!r}: {exc}"
            ) from exc
        if migrate:
            self.migrate()

    # -- schema ------------------------------------------------------------

    def migrate(
        self, progress: Callable[[Migration], object] | None = None
    ) -> list[int]:
        """Apply pending migrations; returns the versions applied.
        ``progress`` is called after each one (``sagakit db migrate``)."""
        applied: list[int] = []
        with self._transaction():
            self._conn.execute(_Q["create_migrations_table"])
            done = {row[0] for row in self._conn.execute(_Q["applied_migrations"])}
            for m in migrations("sqlite"):
                if m.version in done:
                    continue
                for statement in split_statements(m.sql):
                    self._conn.execute(statement)
                self._conn.execute(
                    _Q["record_migration"], (m.version, m.name, time.time())
                )
                applied.append(m.version)
                if progress is not None:
                    progress(m)
        if applied:
            logger.info(
                "schema migrated",
                extra={
                    "action": "schema_migrated",
                    "versions": applied,
                    "db": self.path,
                },
            )
        return applied

    def applied_migrations(self) -> list[int]:
        """Versions applied so far (none on a database sagakit never touched)."""
        (exists,) = self._conn.execute(_Q["migrations_table_exists"]).fetchone()
        if not exists:
            return []
        return [row[0] for row in self._conn.execute(_Q["applied_migrations"])]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot start a transaction on {self.path!r}: {exc}"
            ) from exc
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._conn.execute("ROLLBACK")
            raise StoreError(f"commit failed on {self.path!r}: {exc}") from exc
        self.commits += 1

    # -- writes ------------------------------------------------------------

    @staticmethod
    def _history_rows(history: Sequence[HistoryEntry]) -> list[tuple[Any, ...]]:
        return [
            (
                h.saga_id,
                h.step,
                h.kind,
                h.attempt,
                h.outcome,
                None if h.result is None else _dumps(h.result),
                None if h.error is None else _dumps(h.error.to_dict()),
                h.started_at,
                h.finished_at,
            )
            for h in history
        ]

    def _write_outbox(self, outbox: Sequence[OutboxMessage]) -> None:
        now = time.time()
        self._conn.executemany(
            _Q["insert_outbox"],
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

    async def create(
        self,
        record: SagaRecord,
        history: Sequence[HistoryEntry],
        *,
        owner: str | None = None,
        lease: float | None = None,
        outbox: Sequence[OutboxMessage] = (),
    ) -> tuple[SagaRecord, bool]:
        owner, until = _lease_until(owner, lease)
        try:
            with self._transaction():
                if record.idempotency_key is not None:
                    row = self._conn.execute(
                        _Q["find_saga_by_key"],
                        (record.saga_name, record.idempotency_key),
                    ).fetchone()
                    if row is not None:
                        return self._record(row), False
                self._conn.execute(
                    _Q["insert_saga"],
                    (
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
                        until,
                        record.deadline,
                    ),
                )
                self._conn.executemany(
                    _Q["insert_history"], self._history_rows(history)
                )
                if outbox:
                    self._write_outbox(outbox)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"saga {record.saga_id}: cannot create: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"saga {record.saga_id}: create failed: {exc}") from exc
        return record, True

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
        owner, until = _lease_until(owner, lease)
        try:
            with self._transaction():
                if inbox is not None:
                    self._receive(record.saga_id, inbox)
                cur = self._conn.execute(
                    _Q["update_saga"],
                    (
                        record.status.value,
                        record.version,
                        _dumps(record.context),
                        _dumps(record.state.to_dict()),
                        record.state.failed_step,
                        record.updated_at,
                        record.saga_id,
                        expected_version,
                        owner,
                        until,
                        record.deadline,
                    ),
                )
                if cur.rowcount != 1:
                    exists = self._conn.execute(
                        _Q["saga_exists"], (record.saga_id,)
                    ).fetchone()
                    if exists is None:
                        raise SagaNotFound(f"saga {record.saga_id} does not exist")
                    raise ConcurrencyError(
                        f"saga {record.saga_id}: version {expected_version} is stale; "
                        "another worker saved it first"
                    )
                if history:
                    self._conn.executemany(
                        _Q["insert_history"], self._history_rows(history)
                    )
                if outbox:
                    self._write_outbox(outbox)
        except sqlite3.Error as exc:
            raise StoreError(f"saga {record.saga_id}: save failed: {exc}") from exc

    def _receive(self, saga_id: str, inbox: InboxEntry) -> None:
        """Record the inbox entry in the open transaction, or raise (rolling
        it back) ``SagaNotFound`` or ``DuplicateMessage``."""
        cur = self._conn.execute(
            _Q["insert_inbox"], (inbox.consumer, inbox.message_id, None, time.time())
        )
        if cur.rowcount == 1:
            return
        if self._conn.execute(_Q["saga_exists"], (saga_id,)).fetchone() is None:
            raise SagaNotFound(f"saga {saga_id} does not exist")
        raise DuplicateMessage(
            f"saga {saga_id}: message {inbox.message_id!r} was consumed by "
            f"{inbox.consumer!r} before"
        )

    # -- leases ------------------------------------------------------------

    async def claim(
        self, owner: str, saga_names: Collection[str], *, lease: float, limit: int = 100
    ) -> list[SagaRecord]:
        params = (owner, time.time(), lease, _dumps(list(saga_names)), limit)
        try:
            with self._transaction():
                rows = self._conn.execute(_Q["claim_sagas"], params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(
                f"claim by {owner!r} failed on {self.path!r}: {exc}"
            ) from exc
        return sorted(
            (self._record(r) for r in rows), key=lambda r: (r.created_at, r.saga_id)
        )

    async def renew(
        self, owner: str, saga_ids: Collection[str], *, lease: float
    ) -> list[str]:
        ids = list(dict.fromkeys(saga_ids))
        if not ids:
            return []
        try:
            with self._transaction():
                rows = self._conn.execute(
                    _Q["renew_leases"], (owner, time.time(), lease, _dumps(ids))
                ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(
                f"renew by {owner!r} failed on {self.path!r}: {exc}"
            ) from exc
        renewed = {r[0] for r in rows}
        return [saga_id for saga_id in ids if saga_id in renewed]

    async def release(self, owner: str, saga_ids: Collection[str]) -> None:
        ids = list(dict.fromkeys(saga_ids))
        if not ids:
            return
        try:
            with self._transaction():
                self._conn.execute(_Q["release_leases"], (owner, _dumps(ids)))
        except sqlite3.Error as exc:
            raise StoreError(
                f"release by {owner!r} failed on {self.path!r}: {exc}"
            ) from exc

    # -- reads -------------------------------------------------------------

    @staticmethod
    def _record(row: tuple[Any, ...]) -> SagaRecord:
        saga_id, name, status, version, key, context, state, created, updated = row[:9]
        return SagaRecord(
            saga_id=saga_id,
            saga_name=name,
            status=SagaStatus(status),
            version=version,
            state=SagaState.from_dict(json.loads(state)),
            context=json.loads(context),
            idempotency_key=key,
            created_at=created,
            updated_at=updated,
            deadline=row[9],
        )

    def _read(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(_Q[query], params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{query} failed on {self.path!r}: {exc}") from exc

    async def get(self, saga_id: str) -> SagaRecord:
        rows = self._read("get_saga", (saga_id,))
        if not rows:
            raise SagaNotFound(f"saga {saga_id} does not exist")
        return self._record(rows[0])

    async def history(self, saga_id: str) -> list[HistoryEntry]:
        return [
            HistoryEntry(
                saga_id=r[0],
                step=r[1],
                kind=r[2],
                attempt=r[3],
                outcome=r[4],
                result=None if r[5] is None else json.loads(r[5]),
                error=None if r[6] is None else ErrorInfo.from_dict(json.loads(r[6])),
                started_at=r[7],
                finished_at=r[8],
            )
            for r in self._read("get_history", (saga_id,))
        ]

    async def list_sagas(
        self,
        *,
        status: SagaStatus | None = None,
        saga_name: str | None = None,
        limit: int = 50,
        created_before: float | None = None,
    ) -> list[SagaRecord]:
        params = (
            None if status is None else SagaStatus(status).value,
            saga_name,
            limit,
            created_before,
        )
        return [self._record(r) for r in self._read("list_sagas", params)]

    async def count_by_status(
        self, saga_name: str | None = None
    ) -> dict[SagaStatus, int]:
        rows = self._read("count_by_status", (saga_name,))
        return {SagaStatus(status): int(n) for status, n in rows}

    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        return [r[0] for r in self._read("ids_with_prefix", (prefix, limit))]

    async def unfinished(
        self, saga_names: Collection[str] | None = None, limit: int = 1000
    ) -> list[str]:
        rows = self._read("unfinished_sagas", (limit,))
        return [r[0] for r in rows if saga_names is None or r[1] in saga_names]

    # -- messaging ---------------------------------------------------------

    async def claim_outbox(
        self, owner: str, *, lease: float, limit: int = 100
    ) -> list[OutboxMessage]:
        try:
            with self._transaction():
                rows = self._conn.execute(
                    _Q["claim_outbox"], (owner, time.time(), lease, limit)
                ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(
                f"outbox claim by {owner!r} failed on {self.path!r}: {exc}"
            ) from exc
        rows.sort(key=lambda r: (r[4], r[5], r[0]))
        return [
            OutboxMessage(
                message_id=r[0],
                destination=r[1],
                body=bytes(r[2]),
                saga_id=r[3],
                available_at=r[4],
            )
            for r in rows
        ]

    async def mark_sent(self, message_ids: Collection[str]) -> None:
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return
        try:
            with self._transaction():
                self._conn.execute(_Q["delete_outbox"], (_dumps(ids),))
        except sqlite3.Error as exc:
            raise StoreError(
                f"marking messages sent failed on {self.path!r}: {exc}"
            ) from exc

    async def release_outbox(self, owner: str | None = None) -> int:
        try:
            with self._transaction():
                cur = self._conn.execute(_Q["release_outbox"], (owner,))
        except sqlite3.Error as exc:
            raise StoreError(
                f"releasing outbox holds failed on {self.path!r}: {exc}"
            ) from exc
        return cur.rowcount

    async def due_deadlines(
        self, saga_names: Collection[str], *, limit: int = 100
    ) -> list[str]:
        params = (time.time(), _dumps(list(saga_names)), limit)
        return [r[0] for r in self._read("due_deadlines", params)]

    async def inbox_reply(self, consumer: str, message_id: str) -> bytes | None:
        rows = self._read("inbox_reply", (consumer, message_id))
        if not rows:
            return None
        reply = rows[0][0]
        return b"" if reply is None else bytes(reply)

    async def record_inbox(
        self, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        try:
            with self._transaction():
                cur = self._conn.execute(
                    _Q["insert_inbox"], (consumer, message_id, reply, time.time())
                )
        except sqlite3.Error as exc:
            raise StoreError(
                f"recording message {message_id!r} for {consumer!r} failed "
                f"on {self.path!r}: {exc}"
            ) from exc
        return cur.rowcount == 1

    async def close(self) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
