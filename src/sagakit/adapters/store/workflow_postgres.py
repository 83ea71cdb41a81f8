"""Workflow instances in PostgreSQL.

``PostgresWorkflowStore.connect(dsn)`` opens (and migrates) a
:class:`PostgresDatabase`; ``PostgresWorkflowStore(database)`` composes an
open one, and ``PostgresWorkflowStore.on(store)`` shares a saga store's.
Every write is one statement; claims use ``FOR UPDATE SKIP LOCKED``, so any
number of worker processes may share the database. "Now" is the caller's
clock.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sagakit.adapters.store import rows
from sagakit.adapters.store.postgres_database import (
    OnPostgres,
    PostgresDatabase,
    Row,
)
from sagakit.adapters.store.reads import WorkflowReads
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowSave,
)


class PostgresWorkflowStore(OnPostgres, WorkflowReads[PostgresDatabase]):
    """A :class:`~sagakit.ports.workflow_store.WorkflowStore` on PostgreSQL."""

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
            about, "workflow_insert", *rows.workflow_insert_params(record, history)
        )
        if row["created"]:
            self.database.commits += 1
            return record, True
        return await self.get(record.app, record.instance_id), False

    async def save(
        self,
        record: WorkflowRecord,
        expected_version: int,
        history: Sequence[WorkflowHistoryEntry],
    ) -> None:
        row = await self._fetchrow(
            f"workflow {record.app}/{record.instance_id}: save",
            "workflow_save",
            *rows.workflow_save_params(record, expected_version, history),
        )
        problem = rows.workflow_save_problem(
            record, expected_version, row["saved"], row["found"]
        )
        if problem is not None:
            raise problem
        self.database.commits += 1

    async def save_many(self, saves: Sequence[WorkflowSave]) -> list[Exception | None]:
        bound = [rows.workflow_save_params(*save) for save in saves]
        found = await self._fetch(
            f"{len(saves)} workflow saves",
            "workflow_save_many",
            *(list(column) for column in zip(*bound, strict=True)),
        )
        self.database.commits += 1
        done: list[Exception | None] = []
        for (record, expected, _), row in zip(saves, found, strict=True):
            done.append(
                rows.workflow_save_problem(record, expected, row["saved"], row["found"])
            )
        return done

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
        found = await self._fetch(
            f"workflow claim by {owner!r}",
            rows.per_version("workflow_claim", version),
            app,
            owner,
            now,
            lease,
            sorted(steps),
            limit,
            version,
            fingerprint,
        )
        self.database.commits += 1
        return rows.by_due_then_id([rows.workflow_record(r) for r in found])

    async def renew(
        self, app: str, owner: str, instance_id: str, *, now: float, lease: float
    ) -> bool:
        found = await self._fetch(
            f"workflow lease renewal by {owner!r}",
            "workflow_renew",
            app,
            owner,
            instance_id,
            now,
            lease,
        )
        self.database.commits += 1
        return bool(found)

    async def next_due(
        self,
        app: str,
        steps: Collection[str],
        *,
        version: int | None = None,
        fingerprint: str | None = None,
    ) -> float | None:
        found = await self._fetch(
            "workflow next due",
            rows.per_version("workflow_next_due", version),
            app,
            sorted(steps),
            version,
            fingerprint,
        )
        due: float | None = found[0][0] if found else None
        return due

    async def unfinished(self, app: str) -> int:
        row = await self._fetchrow("counting workflows", "workflow_unfinished", app)
        return int(row[0])
