"""Workflow instances in PostgreSQL.

``PostgresWorkflowStore.connect(dsn)`` opens (and migrates) a
:class:`PostgresDatabase`; ``PostgresWorkflowStore(database)`` composes an
open one, and ``PostgresWorkflowStore.on(store)`` shares a saga store's.
Every write is one statement; claims use ``FOR UPDATE SKIP LOCKED``, so any
number of worker processes may share the database. "Now" is the caller's
clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagakit.adapters.store import workflow_rows
from sagakit.adapters.store.postgres_database import (
    OnPostgres,
    PostgresDatabase,
    Row,
)
from sagakit.adapters.store.reads import WorkflowReads
from sagakit.adapters.store.workflows_sql import SqlWorkflows
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowSave,
)


class PostgresWorkflowStore(
    OnPostgres, WorkflowReads[PostgresDatabase], SqlWorkflows[PostgresDatabase]
):
    """A :class:`~sagakit.ports.workflow_store.WorkflowStore` on PostgreSQL."""

    as_array = staticmethod(list)

    def __init__(
        self, database: PostgresDatabase | Any, *, owned: bool = False
    ) -> None:
        super().__init__(database, owned=owned)
        self._fetch = self.database.fetch

    @classmethod
    def on(cls, store: Any) -> PostgresWorkflowStore:
        """The workflow tables on ``store``'s database; ``close`` leaves it open."""
        return cls(store)

    async def _fetchrow(self, about: str, query: str, *args: Any) -> Row:
        found = await self._fetch(about, query, *args)
        return found[0]

    async def create(
        self, record: WorkflowRecord, history: Sequence[WorkflowHistoryEntry]
    ) -> tuple[WorkflowRecord, bool]:
        about = f"workflow {record.app}/{record.instance_id}: create"
        row = await self._fetchrow(
            about,
            "workflow_insert",
            *workflow_rows.workflow_insert_params(record, history),
        )
        if row["created"]:
            self.database.commits += 1
            return record, True
        return await self.get(record.app, record.instance_id), False

    async def save_one(self, save: WorkflowSave) -> None:
        record = save.record
        row = await self._fetchrow(
            f"workflow {record.app}/{record.instance_id}: save",
            "workflow_save",
            *workflow_rows.workflow_save_params(*save),
        )
        problem = workflow_rows.workflow_save_problem(
            record, save.expected_version, row["saved"], row["found"]
        )
        if problem is not None:
            raise problem
        self.database.commits += 1

    async def save_many(self, saves: Sequence[WorkflowSave]) -> list[Exception | None]:
        bound = [workflow_rows.workflow_save_params(*save) for save in saves]
        found = await self._fetch(
            f"{len(saves)} workflow saves",
            "workflow_save_many",
            *(list(column) for column in zip(*bound, strict=True)),
        )
        self.database.commits += 1
        done: list[Exception | None] = []
        for (record, expected, _), row in zip(saves, found, strict=True):
            done.append(
                workflow_rows.workflow_save_problem(
                    record, expected, row["saved"], row["found"]
                )
            )
        return done

    async def write(self, about: str, query: str, *args: Any) -> list[Any]:
        """One statement, its own transaction: its rows (counted)."""
        found = await self._fetch(about, query, *args)
        self.database.commits += 1
        return found
