"""Workflow instances in PostgreSQL through an asyncpg pool.

``PostgresWorkflowStore.connect(dsn)`` opens a pool and migrates with
:class:`PostgresStore`'s runner (one migrations table for both);
``PostgresWorkflowStore.on(store)`` shares an open store's pool. Every
write is one statement; claims use ``FOR UPDATE SKIP LOCKED``, so any number
of worker processes may share the database. "Now" is the caller's clock.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

import asyncpg  # the postgres module above already checked it is installed

from sagakit.adapters.store.postgres import (
    _DRIVER_ERRORS,
    PostgresStore,
    _keep_session,
    _reason,
    describe,
)
from sagakit.adapters.store.sql import queries
from sagakit.errors import ConcurrencyError, SagaNotFound, StoreError
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowStatus,
)

_Q = queries("postgres")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _record(row: asyncpg.Record) -> WorkflowRecord:
    return WorkflowRecord(
        app=row["app"],
        instance_id=row["instance_id"],
        status=WorkflowStatus(row["status"]),
        step=row["step"],
        input=None if row["input"] is None else json.loads(row["input"]),
        due_at=row["due_at"],
        state=json.loads(row["state"]),
        version=row["version"],
        attempts=row["attempts"],
        transitions=row["transitions"],
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        owner=row["owner"],
        lease_until=row["lease_until"],
    )


def _history_json(history: Sequence[WorkflowHistoryEntry]) -> str:
    return _dumps(
        [
            {
                "step": h.step,
                "attempt": h.attempt,
                "outcome": h.outcome,
                "detail": h.detail,
                "error": h.error,
                "recorded_at": h.recorded_at,
            }
            for h in history
        ]
    )


def _columns(record: WorkflowRecord) -> tuple[Any, ...]:
    """$3..$13 of workflow_insert and workflow_save, after app and id."""
    return (
        record.status.value,
        record.step,
        None if record.input is None else _dumps(record.input),
        record.due_at,
        _dumps(record.state),
        record.version,
        record.attempts,
        record.transitions,
        record.error,
    )


class PostgresWorkflowStore:
    """A :class:`~sagakit.ports.workflow_store.WorkflowStore` on PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool, *, where: str, owned: bool = True) -> None:
        self._pool = pool
        self._owned = owned
        self.where = where
        self.commits = 0

    @classmethod
    def on(cls, store: PostgresStore) -> PostgresWorkflowStore:
        """The workflow tables on ``store``'s pool; ``close`` leaves it open."""
        return cls(store._pool, where=store.where, owned=False)

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 10, migrate: bool = True
    ) -> PostgresWorkflowStore:
        """Open a pool on ``dsn`` and, unless ``migrate=False``, migrate."""
        where = describe(dsn)
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, reset=_keep_session
            )
        except (*_DRIVER_ERRORS, ValueError) as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {where}: {_reason(exc)}"
            ) from exc
        if migrate:
            try:
                await PostgresStore(pool, where=where).migrate()
            except BaseException:
                await pool.close()
                raise
        return cls(pool, where=where)

    def _error(self, about: str, exc: BaseException) -> StoreError:
        return StoreError(
            f"{about} failed on PostgreSQL at {self.where}: {_reason(exc)}"
        )

    async def _fetch(self, about: str, query: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return await self._pool.fetch(_Q[query], *args)
        except _DRIVER_ERRORS as exc:
            raise self._error(about, exc) from exc

    async def _fetchrow(self, about: str, query: str, *args: Any) -> asyncpg.Record:
        rows = await self._fetch(about, query, *args)
        return rows[0]

    async def create(
        self, record: WorkflowRecord, history: Sequence[WorkflowHistoryEntry]
    ) -> tuple[WorkflowRecord, bool]:
        about = f"workflow {record.app}/{record.instance_id}: create"
        row = await self._fetchrow(
            about,
            "workflow_insert",
            record.app,
            record.instance_id,
            *_columns(record),
            record.created_at,
            record.updated_at,
            record.owner,
            record.lease_until,
            _history_json(history),
        )
        if row["created"]:
            self.commits += 1
            return record, True
        return await self.get(record.app, record.instance_id), False

    async def get(self, app: str, instance_id: str) -> WorkflowRecord:
        rows = await self._fetch(
            f"workflow {app}/{instance_id}: read", "workflow_get", app, instance_id
        )
        if not rows:
            raise SagaNotFound(f"workflow {app}/{instance_id} does not exist")
        return _record(rows[0])

    async def save(
        self,
        record: WorkflowRecord,
        expected_version: int,
        history: Sequence[WorkflowHistoryEntry],
    ) -> None:
        name = f"workflow {record.app}/{record.instance_id}"
        row = await self._fetchrow(
            f"{name}: save",
            "workflow_save",
            record.app,
            record.instance_id,
            *_columns(record),
            record.updated_at,
            record.owner,
            expected_version,
            record.lease_until,
            _history_json(history),
        )
        if row["saved"] == 1:
            self.commits += 1
            return
        if not row["found"]:
            raise SagaNotFound(f"{name} does not exist")
        raise ConcurrencyError(
            f"{name}: version {expected_version} is stale; "
            "another writer saved it first"
        )

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
        rows = await self._fetch(
            f"workflow claim by {owner!r}",
            "workflow_claim",
            app,
            owner,
            now,
            lease,
            sorted(steps),
            limit,
        )
        self.commits += 1
        records = [_record(r) for r in rows]
        return sorted(records, key=lambda r: (r.due_at or 0.0, r.instance_id))

    async def renew(
        self, app: str, owner: str, instance_id: str, *, now: float, lease: float
    ) -> bool:
        rows = await self._fetch(
            f"workflow lease renewal by {owner!r}",
            "workflow_renew",
            app,
            owner,
            instance_id,
            now,
            lease,
        )
        self.commits += 1
        return bool(rows)

    async def next_due(self, app: str, steps: Collection[str]) -> float | None:
        row = await self._fetchrow(
            "workflow next due", "workflow_next_due", app, sorted(steps)
        )
        due: float | None = row[0]
        return due

    async def unfinished(self, app: str) -> int:
        row = await self._fetchrow("counting workflows", "workflow_unfinished", app)
        return int(row[0])

    async def history(self, app: str, instance_id: str) -> list[WorkflowHistoryEntry]:
        rows = await self._fetch(
            f"workflow {app}/{instance_id}: history",
            "workflow_history",
            app,
            instance_id,
        )
        return [
            WorkflowHistoryEntry(
                app=r["app"],
                instance_id=r["instance_id"],
                step=r["step"],
                attempt=r["attempt"],
                outcome=r["outcome"],
                detail=None if r["detail"] is None else json.loads(r["detail"]),
                error=r["error"],
                recorded_at=r["recorded_at"],
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
        rows = await self._fetch(
            "listing workflows",
            "workflow_list",
            None if status is None else WorkflowStatus(status).value,
            app,
            limit,
            created_before,
        )
        return [_record(r) for r in rows]

    async def count_workflows_by_status(
        self, app: str | None = None
    ) -> dict[WorkflowStatus, int]:
        rows = await self._fetch("counting workflows", "workflow_count_by_status", app)
        return {WorkflowStatus(r["status"]): int(r["n"]) for r in rows}

    async def ids_with_prefix(
        self, prefix: str, *, app: str | None = None, limit: int = 10
    ) -> list[tuple[str, str]]:
        rows = await self._fetch(
            "finding workflow ids", "workflow_ids_with_prefix", prefix, app, limit
        )
        return [(r["app"], r["instance_id"]) for r in rows]

    async def close(self) -> None:
        if not self._owned:
            return
        try:
            await self._pool.close()
        except _DRIVER_ERRORS as exc:
            raise self._error("closing the pool", exc) from exc

    def __repr__(self) -> str:
        return f"PostgresWorkflowStore({self.where!r})"
