"""Workflow instances in SQLite, next to the saga tables of the same file.

Composes a :class:`SQLiteDatabase`: opened (and migrated) from a path, or an
open one shared with the saga and event stores of the file. Claims run inside
``BEGIN IMMEDIATE``: several processes may share the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagakit.adapters.store import rows, workflow_rows
from sagakit.adapters.store.reads import WorkflowReads
from sagakit.adapters.store.sqlite_database import OnSQLite, SQLiteDatabase
from sagakit.adapters.store.workflows_sql import SqlWorkflows
from sagakit.errors import SagaNotFound
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowSave,
)


class SQLiteWorkflowStore(
    OnSQLite, WorkflowReads[SQLiteDatabase], SqlWorkflows[SQLiteDatabase]
):
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
                    *workflow_rows.workflow_columns(record),
                    record.created_at,
                    record.updated_at,
                    record.owner,
                    record.lease_until,
                    rows.dumps_or_none(record.result),
                    record.start_digest,
                    *workflow_rows.workflow_definition(record),
                ),
            )
            if cur.rowcount != 1:
                row = db.execute("workflow_get", key).fetchone()
                return workflow_rows.workflow_record(row), False
            db.executemany(
                "workflow_insert_history", workflow_rows.workflow_history_rows(history)
            )
        return record, True

    async def save_one(self, save: WorkflowSave) -> None:
        name = f"workflow {save.record.app}/{save.record.instance_id}"
        with self.database.transaction(f"{name}: save"):
            failed = self._save(save)
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
                *workflow_rows.workflow_columns(record),
                record.updated_at,
                record.owner,
                expected_version,
                record.lease_until,
                rows.dumps_or_none(record.result),
                *workflow_rows.workflow_definition(record),
            ),
        )
        if cur.rowcount == 1:
            db.executemany(
                "workflow_insert_history", workflow_rows.workflow_history_rows(history)
            )
            return None
        name = f"workflow {record.app}/{record.instance_id}"
        if db.execute("workflow_get", key).fetchone() is None:
            return SagaNotFound(f"{name} does not exist")
        return workflow_rows.stale_workflow(name, expected_version)

    async def write(self, about: str, query: str, *args: Any) -> list[Any]:
        """One named statement in its own transaction: its rows."""
        with self.database.transaction(about):
            return self.database.execute(query, args).fetchall()
