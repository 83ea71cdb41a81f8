"""Workflow instances in MySQL or MariaDB.

``MySQLWorkflowStore.connect(url)`` opens (and migrates) a
:class:`MySQLDatabase`; ``MySQLWorkflowStore(database)`` composes an open
one, and ``MySQLWorkflowStore.on(store)`` shares a saga store's. Every write
is one transaction in one round trip (several saves: still one); claims use
``FOR UPDATE SKIP LOCKED`` in index order, so any number of worker processes
may share the database. "Now" is the caller's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagakit.adapters.store import workflow_rows
from sagakit.adapters.store.mysql_database import MySQLDatabase, OnMySQL, Step
from sagakit.adapters.store.reads import WorkflowReads
from sagakit.adapters.store.workflows_sql import SqlWorkflows
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowSave,
)


def _history_steps(history: Sequence[WorkflowHistoryEntry]) -> list[Step]:
    """Blocks that write history lines (if the instance was written)."""
    return [
        ("workflow_history_row", r)
        for r in workflow_rows.workflow_history_rows(history)
    ]


def _save_steps(save: WorkflowSave) -> list[Step]:
    """The blocks of one save; the last says what it did."""
    return [
        ("workflow_save", workflow_rows.workflow_save_params(*save)),
        *_history_steps(save.history),
        ("workflow_saved", ()),
    ]


class MySQLWorkflowStore(
    OnMySQL, WorkflowReads[MySQLDatabase], SqlWorkflows[MySQLDatabase]
):
    """A :class:`~sagakit.ports.workflow_store.WorkflowStore` on MySQL."""

    @classmethod
    def on(cls, store: Any) -> MySQLWorkflowStore:
        """The workflow tables on ``store``'s database; ``close`` leaves it open."""
        return cls(store)

    async def create(
        self, record: WorkflowRecord, history: Sequence[WorkflowHistoryEntry]
    ) -> tuple[WorkflowRecord, bool]:
        ((row,),) = await self.database.script(
            f"workflow {record.app}/{record.instance_id}: create",
            [
                (
                    "workflow_insert",
                    workflow_rows.workflow_insert_params(record, history),
                ),
                *_history_steps(history),
                ("created", ()),
            ],
            counted=False,
        )
        if row[0]:
            self.database.commits += 1
            return record, True
        return await self.get(record.app, record.instance_id), False

    async def save_one(self, save: WorkflowSave) -> None:
        record = save.record
        (((saved, found),),) = await self.database.script(
            f"workflow {record.app}/{record.instance_id}: save",
            _save_steps(save),
            counted=False,
        )
        problem = workflow_rows.workflow_save_problem(
            record, save.expected_version, saved, found
        )
        if problem is not None:
            raise problem
        self.database.commits += 1

    async def save_many(self, saves: Sequence[WorkflowSave]) -> list[Exception | None]:
        if not saves:
            return []
        found = await self.database.script(
            f"{len(saves)} workflow saves",
            [step for save in saves for step in _save_steps(save)],
        )
        return [
            workflow_rows.workflow_save_problem(record, expected, saved, exists)
            for (record, expected, _), ((saved, exists),) in zip(
                saves, found, strict=True
            )
        ]

    async def write(self, about: str, query: str, *args: Any) -> list[Any]:
        """The block in a transaction of its own: its rows (counted)."""
        return await self.database.write(about, query, *args)
