"""What the SQL workflow stores (SQLite, PostgreSQL, MySQL) do the same
way: claims, lease renewals and the reads a worker polls, each one named
query of the dialect's ``queries.sql`` with the same arguments ("now" is
the caller's clock here). They differ in how a list travels (``as_array``)
and in how a write runs and is counted (``write``), as for sagas
(:mod:`.sagas_sql`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Generic, Protocol, TypeVar

from sagakit.adapters.store import workflow_rows
from sagakit.adapters.store.rows import Row, dumps
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowSave,
)


class Fetches(Protocol):
    async def fetch(self, about: str, query: str, *args: Any) -> Sequence[Row]:
        """The rows of a named query; driver errors become StoreError."""


D = TypeVar("D", bound=Fetches)


class SqlWorkflows(Generic[D]):
    """Workflow claims and leases over ``database``'s named queries."""

    database: D
    as_array: Any = staticmethod(dumps)

    async def write(self, about: str, query: str, *args: Any) -> Sequence[Row]:
        """The rows of the named write, committed and counted."""
        raise NotImplementedError

    async def save(
        self,
        record: WorkflowRecord,
        expected_version: int,
        history: Sequence[WorkflowHistoryEntry],
    ) -> None:
        """See :meth:`~sagakit.ports.workflow_store.WorkflowStore.save`."""
        await self.save_one(WorkflowSave(record, expected_version, history))

    async def save_one(self, save: WorkflowSave) -> None:
        """Write ``save`` (as ``save`` says)."""
        raise NotImplementedError

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
        found = await self.write(
            f"workflow claim by {owner!r}",
            workflow_rows.per_version("workflow_claim", version),
            app,
            owner,
            now,
            lease,
            self.as_array(sorted(steps)),
            limit,
            version,
            fingerprint,
        )
        return workflow_rows.by_due_then_id(
            [workflow_rows.workflow_record(r) for r in found]
        )

    async def renew(
        self, app: str, owner: str, instance_id: str, *, now: float, lease: float
    ) -> bool:
        found = await self.write(
            f"workflow lease renewal by {owner!r}",
            "workflow_renew",
            app,
            owner,
            instance_id,
            now,
            lease,
        )
        return bool(found)

    async def next_due(
        self,
        app: str,
        steps: Collection[str],
        *,
        version: int | None = None,
        fingerprint: str | None = None,
    ) -> float | None:
        found = await self.database.fetch(
            "workflow next due",
            workflow_rows.per_version("workflow_next_due", version),
            app,
            self.as_array(sorted(steps)),
            version,
            fingerprint,
        )
        due: float | None = found[0][0] if found else None
        return due

    async def unfinished(self, app: str) -> int:
        found = await self.database.fetch(
            "counting workflows", "workflow_unfinished", app
        )
        return int(found[0][0])
