"""Workflow instances kept in this process: tests and examples.

Honours the same contract as the durable stores (versions, leases, claims,
append-only history) but loses everything when the process ends.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import replace

from sagakit.errors import ConcurrencyError, SagaNotFound
from sagakit.ports.workflow_store import (
    LiveWorkflows,
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowSave,
    WorkflowStatus,
)

_Key = tuple[str, str]


def _of(row: WorkflowRecord, version: int | None, fingerprint: str | None) -> bool:
    """Whether ``row`` is of that definition (None: any), as claims filter."""
    return (version is None or row.definition_version == version) and (
        fingerprint is None or row.fingerprint in (None, fingerprint)
    )


class InMemoryWorkflowStore:
    def __init__(self) -> None:
        self.commits = 0
        self._rows: dict[_Key, WorkflowRecord] = {}
        self._history: dict[_Key, list[WorkflowHistoryEntry]] = {}

    async def create(
        self, record: WorkflowRecord, history: Sequence[WorkflowHistoryEntry]
    ) -> tuple[WorkflowRecord, bool]:
        key = (record.app, record.instance_id)
        if key in self._rows:
            return copy.deepcopy(self._rows[key]), False
        self._rows[key] = copy.deepcopy(record)
        self._history[key] = list(history)
        self.commits += 1
        return record, True

    async def get(self, app: str, instance_id: str) -> WorkflowRecord:
        row = self._rows.get((app, instance_id))
        if row is None:
            raise SagaNotFound(f"workflow {app}/{instance_id} does not exist")
        return copy.deepcopy(row)

    async def save(
        self,
        record: WorkflowRecord,
        expected_version: int,
        history: Sequence[WorkflowHistoryEntry],
    ) -> None:
        key = (record.app, record.instance_id)
        current = self._rows.get(key)
        if current is None:
            raise SagaNotFound(
                f"workflow {record.app}/{record.instance_id} does not exist"
            )
        if current.version != expected_version:
            raise ConcurrencyError(
                f"workflow {record.app}/{record.instance_id}: version "
                f"{expected_version} is stale; another writer saved it first"
            )
        self._rows[key] = replace(
            copy.deepcopy(record),
            created_at=current.created_at,
            start_digest=current.start_digest,
        )
        self._history[key].extend(history)
        self.commits += 1

    async def save_many(self, saves: Sequence[WorkflowSave]) -> list[Exception | None]:
        done: list[Exception | None] = []
        commits = self.commits
        for save in saves:
            try:
                await self.save(*save)
            except (ConcurrencyError, SagaNotFound) as exc:
                done.append(exc)
            else:
                done.append(None)
        self.commits = commits + 1
        return done

    def _claimable(
        self, row: WorkflowRecord, steps: Collection[str], now: float
    ) -> bool:
        if row.step not in steps:
            return False
        if row.status is WorkflowStatus.PENDING:
            return row.due_at is not None and row.due_at <= now
        return (
            row.status is WorkflowStatus.RUNNING
            and row.lease_until is not None
            and row.lease_until < now
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
        version: int | None = None,
        fingerprint: str | None = None,
    ) -> list[WorkflowRecord]:
        due = sorted(
            (
                row
                for (a, _), row in self._rows.items()
                if a == app
                and _of(row, version, fingerprint)
                and self._claimable(row, steps, now)
            ),
            key=lambda r: (r.due_at or 0.0, r.instance_id),
        )[:limit]
        claimed = []
        for row in due:
            taken = replace(
                row,
                status=WorkflowStatus.RUNNING,
                owner=owner,
                lease_until=now + lease,
                version=row.version + 1,
                attempts=row.attempts + 1,
                updated_at=now,
            )
            self._rows[(app, row.instance_id)] = taken
            claimed.append(copy.deepcopy(taken))
        if claimed:
            self.commits += 1
        return claimed

    async def renew(
        self, app: str, owner: str, instance_id: str, *, now: float, lease: float
    ) -> bool:
        row = self._rows.get((app, instance_id))
        if (
            row is None
            or row.owner != owner
            or row.status is not WorkflowStatus.RUNNING
        ):
            return False
        self._rows[(app, instance_id)] = replace(row, lease_until=now + lease)
        self.commits += 1
        return True

    async def next_due(
        self,
        app: str,
        steps: Collection[str],
        *,
        version: int | None = None,
        fingerprint: str | None = None,
    ) -> float | None:
        moments = [
            row.due_at if row.status is WorkflowStatus.PENDING else row.lease_until
            for (a, _), row in self._rows.items()
            if a == app
            and not row.status.terminal
            and row.step in steps
            and _of(row, version, fingerprint)
        ]
        known = [m for m in moments if m is not None]
        return min(known) if known else None

    async def unfinished(self, app: str) -> int:
        return sum(
            1
            for (a, _), row in self._rows.items()
            if a == app and not row.status.terminal
        )

    async def history(self, app: str, instance_id: str) -> list[WorkflowHistoryEntry]:
        return list(self._history.get((app, instance_id), []))

    async def live_workflows(self) -> LiveWorkflows:
        return dict(
            Counter(
                (r.app, r.definition_version, r.fingerprint, r.step)
                for r in self._rows.values()
                if not r.status.terminal
            )
        )

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        app: str | None = None,
        limit: int = 50,
        created_before: float | None = None,
    ) -> list[WorkflowRecord]:
        wanted = None if status is None else WorkflowStatus(status)
        found = [
            row
            for row in self._rows.values()
            if (wanted is None or row.status is wanted)
            and (app is None or row.app == app)
            and (created_before is None or row.created_at < created_before)
        ]
        found.sort(key=lambda r: (r.created_at, r.instance_id, r.app), reverse=True)
        return [copy.deepcopy(row) for row in found[:limit]]

    async def count_workflows_by_status(
        self, app: str | None = None
    ) -> dict[WorkflowStatus, int]:
        counts: dict[WorkflowStatus, int] = {}
        for row in self._rows.values():
            if app is None or row.app == app:
                counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    async def ids_with_prefix(
        self, prefix: str, *, app: str | None = None, limit: int = 10
    ) -> list[tuple[str, str]]:
        found = sorted(
            (instance_id, a)
            for a, instance_id in self._rows
            if instance_id.startswith(prefix) and (app is None or a == app)
        )
        return [(a, instance_id) for instance_id, a in found[:limit]]

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "InMemoryWorkflowStore()"
