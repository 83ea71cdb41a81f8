"""Workflow instances in SQLite, next to the saga tables of the same file.

Opens (and migrates) the database through :class:`SQLiteStore`, so both
share one migrations runner; or wraps an open ``SQLiteStore`` to share its
connection. Claims run inside ``BEGIN IMMEDIATE``: several processes may
share the file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from sagakit.adapters.store.sql import queries
from sagakit.adapters.store.sqlite import SQLiteStore
from sagakit.errors import ConcurrencyError, SagaNotFound, StoreError
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowStatus,
)

_Q = queries("sqlite")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _record(row: tuple[Any, ...]) -> WorkflowRecord:
    return WorkflowRecord(
        app=row[0],
        instance_id=row[1],
        status=WorkflowStatus(row[2]),
        step=row[3],
        input=None if row[4] is None else json.loads(row[4]),
        due_at=row[5],
        state=json.loads(row[6]),
        version=row[7],
        attempts=row[8],
        transitions=row[9],
        error=row[10],
        created_at=row[11],
        updated_at=row[12],
        owner=row[13],
        lease_until=row[14],
    )


def _history_rows(history: Sequence[WorkflowHistoryEntry]) -> list[tuple[Any, ...]]:
    return [
        (
            h.app,
            h.instance_id,
            h.step,
            h.attempt,
            h.outcome,
            None if h.detail is None else _dumps(h.detail),
            h.error,
            h.recorded_at,
        )
        for h in history
    ]


class SQLiteWorkflowStore:
    """A :class:`~sagakit.ports.workflow_store.WorkflowStore` in one SQLite file.

    Pass a path (the file is opened and, unless ``migrate=False``, migrated)
    or an open ``SQLiteStore`` to share its connection; ``close`` closes only
    what it opened.
    """

    def __init__(
        self,
        path: str | Path | SQLiteStore = "sagakit.db",
        *,
        synchronous: str = "normal",
        migrate: bool = True,
    ) -> None:
        self._owned = not isinstance(path, SQLiteStore)
        self._db = (
            path
            if isinstance(path, SQLiteStore)
            else SQLiteStore(path, synchronous=synchronous, migrate=migrate)
        )
        self._conn = self._db._conn
        self.path = self._db.path

    @property
    def commits(self) -> int:
        return self._db.commits

    def _fail(self, about: str, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"{about} failed on {self.path!r}: {exc}")

    async def create(
        self, record: WorkflowRecord, history: Sequence[WorkflowHistoryEntry]
    ) -> tuple[WorkflowRecord, bool]:
        about = f"workflow {record.app}/{record.instance_id}: create"
        try:
            with self._db._transaction():
                cur = self._conn.execute(
                    _Q["workflow_insert"],
                    (
                        record.app,
                        record.instance_id,
                        record.status.value,
                        record.step,
                        None if record.input is None else _dumps(record.input),
                        record.due_at,
                        _dumps(record.state),
                        record.version,
                        record.attempts,
                        record.transitions,
                        record.error,
                        record.created_at,
                        record.updated_at,
                        record.owner,
                        record.lease_until,
                    ),
                )
                if cur.rowcount != 1:
                    row = self._conn.execute(
                        _Q["workflow_get"], (record.app, record.instance_id)
                    ).fetchone()
                    return _record(row), False
                self._conn.executemany(
                    _Q["workflow_insert_history"], _history_rows(history)
                )
        except sqlite3.Error as exc:
            raise self._fail(about, exc) from exc
        return record, True

    async def get(self, app: str, instance_id: str) -> WorkflowRecord:
        try:
            row = self._conn.execute(_Q["workflow_get"], (app, instance_id)).fetchone()
        except sqlite3.Error as exc:
            raise self._fail(f"workflow {app}/{instance_id}: read", exc) from exc
        if row is None:
            raise SagaNotFound(f"workflow {app}/{instance_id} does not exist")
        return _record(row)

    async def save(
        self,
        record: WorkflowRecord,
        expected_version: int,
        history: Sequence[WorkflowHistoryEntry],
    ) -> None:
        name = f"workflow {record.app}/{record.instance_id}"
        try:
            with self._db._transaction():
                cur = self._conn.execute(
                    _Q["workflow_update"],
                    (
                        record.app,
                        record.instance_id,
                        record.status.value,
                        record.step,
                        None if record.input is None else _dumps(record.input),
                        record.due_at,
                        _dumps(record.state),
                        record.version,
                        record.attempts,
                        record.transitions,
                        record.error,
                        record.updated_at,
                        record.owner,
                        expected_version,
                        record.lease_until,
                    ),
                )
                if cur.rowcount != 1:
                    found = self._conn.execute(
                        _Q["workflow_get"], (record.app, record.instance_id)
                    ).fetchone()
                    if found is None:
                        raise SagaNotFound(f"{name} does not exist")
                    raise ConcurrencyError(
                        f"{name}: version {expected_version} is stale; "
                        "another writer saved it first"
                    )
                self._conn.executemany(
                    _Q["workflow_insert_history"], _history_rows(history)
                )
        except sqlite3.Error as exc:
            raise self._fail(f"{name}: save", exc) from exc

    async def claim(
        self,
        app: str,
        owner: str,
        steps: Collection[str],
        *,
        now: float,
        lease: float,
        limit: int = 100,
    ) -> list[WorkflowRecord]:
        params = (app, owner, now, lease, _dumps(sorted(steps)), limit)
        try:
            with self._db._transaction():
                rows = self._conn.execute(_Q["workflow_claim"], params).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(f"workflow claim by {owner!r}", exc) from exc
        records = [_record(r) for r in rows]
        return sorted(records, key=lambda r: (r.due_at or 0.0, r.instance_id))

    async def renew(
        self, app: str, owner: str, instance_id: str, *, now: float, lease: float
    ) -> bool:
        try:
            with self._db._transaction():
                cur = self._conn.execute(
                    _Q["workflow_renew"], (app, owner, instance_id, now, lease)
                )
        except sqlite3.Error as exc:
            raise self._fail(f"workflow lease renewal by {owner!r}", exc) from exc
        return cur.rowcount == 1

    def _read(
        self, about: str, query: str, params: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(_Q[query], params).fetchall()
        except sqlite3.Error as exc:
            raise self._fail(about, exc) from exc

    def _scalar(self, query: str, params: Sequence[Any]) -> Any:
        return self._read(query, query, params)[0][0]

    async def next_due(self, app: str, steps: Collection[str]) -> float | None:
        due: float | None = self._scalar(
            "workflow_next_due", (app, _dumps(sorted(steps)))
        )
        return due

    async def unfinished(self, app: str) -> int:
        return int(self._scalar("workflow_unfinished", (app,)))

    async def history(self, app: str, instance_id: str) -> list[WorkflowHistoryEntry]:
        rows = self._read(
            f"workflow {app}/{instance_id}: history",
            "workflow_history",
            (app, instance_id),
        )
        return [
            WorkflowHistoryEntry(
                app=r[0],
                instance_id=r[1],
                step=r[2],
                attempt=r[3],
                outcome=r[4],
                detail=None if r[5] is None else json.loads(r[5]),
                error=r[6],
                recorded_at=r[7],
            )
            for r in rows
        ]

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        app: str | None = None,
        limit: int = 50,
        created_before: float | None = None,
    ) -> list[WorkflowRecord]:
        wanted = None if status is None else WorkflowStatus(status).value
        rows = self._read(
            "listing workflows",
            "workflow_list",
            (wanted, app, limit, created_before),
        )
        return [_record(r) for r in rows]

    async def count_workflows_by_status(
        self, app: str | None = None
    ) -> dict[WorkflowStatus, int]:
        rows = self._read("counting workflows", "workflow_count_by_status", (app,))
        return {WorkflowStatus(status): int(n) for status, n in rows}

    async def ids_with_prefix(
        self, prefix: str, *, app: str | None = None, limit: int = 10
    ) -> list[tuple[str, str]]:
        rows = self._read(
            "finding workflow ids", "workflow_ids_with_prefix", (prefix, app, limit)
        )
        return [(r[0], r[1]) for r in rows]

    async def close(self) -> None:
        if self._owned:
            await self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteWorkflowStore({self.path!r})"
