"""Workflow instances in SQLite, next to the saga tables of the same file.

Composes a :class:`SQLiteDatabase`: opened (and migrated) from a path, or an
open one shared with the saga and event stores of the file. Claims run inside
``BEGIN IMMEDIATE``: several processes may share the file.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sagakit.adapters.store import rows
from sagakit.adapters.store.reads import WorkflowReads
from sagakit.adapters.store.rows import dumps
from sagakit.adapters.store.sqlite_database import OnSQLite, SQLiteDatabase
from sagakit.errors import SagaNotFound
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowSave,
)


class SQLiteWorkflowStore(OnSQLite, WorkflowReads[SQLiteDatabase]):
    """A :class:`~sagakit.ports.workflow_store.WorkflowStore` in one SQLite file.

    Pass a path (the file is opened and, unless ``migrate=False``, migrated)
    or an open :class:`SQLiteDatabase` (or ``SQLiteStore``) to share its
    connection; ``close`` closes only what it opened.
    """

    async def create(
        self, record: WorkflowRecord, history: Sequence[WorkflowHistoryEntry]
    ) -> tuple[WorkflowRecord, bool]:
        db = self.database
        key = (record.app, record.instance_id)
        with db.transaction(f"workflow {record.app}/{record.instance_id}: create"):
            cur = db.execute(
                "workflow_insert",
                (
                    *key,
                    *rows.workflow_columns(record),
                    record.created_at,
                    record.updated_at,
                    record.owner,
                    record.lease_until,
                    rows.dumps_or_none(record.result),
                    record.start_digest,
                    *rows.workflow_definition(record),
                ),
            )
            if cur.rowcount != 1:
                row = db.execute("workflow_get", key).fetchone()
                return rows.workflow_record(row), False
            db.executemany(
                "workflow_insert_history", rows.workflow_history_rows(history)
            )
        return record, True

    async def save(
        self,
        record: WorkflowRecord,
        expected_version: int,
        history: Sequence[WorkflowHistoryEntry],
    ) -> None:
        name = f"workflow {record.app}/{record.instance_id}"
        with self.database.transaction(f"{name}: save"):
            failed = self._save(WorkflowSave(record, expected_version, history))
        if failed is not None:
            raise failed

    async def save_many(self, saves: Sequence[WorkflowSave]) -> list[Exception | None]:
        with self.database.transaction(f"{len(saves)} workflow saves"):
            return [self._save(save) for save in saves]

    def _save(self, save: WorkflowSave) -> Exception | None:
        """``save`` inside the caller's transaction; what it would raise."""
        record, expected_version, history = save
        db = self.database
        key = (record.app, record.instance_id)
        cur = db.execute(
            "workflow_update",
            (
                *key,
                *rows.workflow_columns(record),
                record.updated_at,
                record.owner,
                expected_version,
                record.lease_until,
                rows.dumps_or_none(record.result),
                *rows.workflow_definition(record),
            ),
        )
        if cur.rowcount == 1:
            db.executemany(
                "workflow_insert_history", rows.workflow_history_rows(history)
            )
            return None
        name = f"workflow {record.app}/{record.instance_id}"
        if db.execute("workflow_get", key).fetchone() is None:
            return SagaNotFound(f"{name} does not exist")
        return rows.stale_workflow(name, expected_version)

    async def claim(
        self,
        app: str,
        owner: str,
        steps: Collection[str],
        *,
        now: float,
        lease: float,
        limit: int = 100,
        version: int | None = None,
        fingerprint: str | None = None,
    ) -> list[WorkflowRecord]:
        steps_json = dumps(sorted(steps))
        params = (app, owner, now, lease, steps_json, limit, version, fingerprint)
        query = rows.per_version("workflow_claim", version)
        with self.database.transaction(f"workflow claim by {owner!r}"):
            found = self.database.execute(query, params).fetchall()
        return rows.by_due_then_id([rows.workflow_record(r) for r in found])

    async def renew(
        self, app: str, owner: str, instance_id: str, *, now: float, lease: float
    ) -> bool:
        with self.database.transaction(f"workflow lease renewal by {owner!r}"):
            cur = self.database.execute(
                "workflow_renew", (app, owner, instance_id, now, lease)
            )
        return cur.rowcount == 1

    def _read(
        self, about: str, query: str, params: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        return self.database.fetchall(about, query, params)

    def _scalar(self, query: str, params: Sequence[Any]) -> Any:
        return self._read(query, query, params)[0][0]

    async def next_due(
        self,
        app: str,
        steps: Collection[str],
        *,
        version: int | None = None,
        fingerprint: str | None = None,
    ) -> float | None:
        query = rows.per_version("workflow_next_due", version)
        found = self._read(
            query, query, (app, dumps(sorted(steps)), version, fingerprint)
        )
        due: float | None = found[0][0] if found else None
        return due

    async def unfinished(self, app: str) -> int:
        return int(self._scalar("workflow_unfinished", (app,)))
