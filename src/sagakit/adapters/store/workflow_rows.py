"""Workflow rows to records and back, shared by the SQLite, PostgreSQL and
MySQL workflow stores.

The same mapping as :mod:`sagakit.adapters.store.rows` (columns by position,
JSON as compact text), for ``sagakit_workflows`` and
``sagakit_workflow_history``: the record a row reads as, the parameters a
save or an insert binds, and what a save that changed nothing raises.
Separate from ``rows`` so that a saga store's reads load none of it. The
workflow port's classes are imported where a row is read, not at the top:
a saga store's reads (``sagakit list``) import this module through
``reads.py`` and need no workflow port.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sagakit.adapters.store.rows import Row, dumps, dumps_or_none, loads_or_none
from sagakit.errors import ConcurrencyError, SagaNotFound

if TYPE_CHECKING:
    from sagakit.ports.workflow_store import WorkflowHistoryEntry, WorkflowRecord


def workflow_history_rows(
    history: Sequence[WorkflowHistoryEntry],
) -> list[tuple[Any, ...]]:
    """Workflow history lines as the rows SQLite and MySQL insert: ``app,
    instance_id, step, attempt, outcome, detail, error, recorded_at``."""
    return [
        (
            h.app,
            h.instance_id,
            h.step,
            h.attempt,
            h.outcome,
            dumps_or_none(h.detail),
            h.error,
            h.recorded_at,
        )
        for h in history
    ]


def workflow_history_json(history: Sequence[WorkflowHistoryEntry]) -> str:
    """Workflow history lines as one JSON array of objects keyed by the
    ``sagakit_workflow_history`` columns they fill."""
    return dumps(
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


def workflow_record(row: Row) -> WorkflowRecord:
    """``app, instance_id, status, step, input, due_at, state, version,
    attempts, transitions, error, created_at, updated_at, owner,
    lease_until, result, start_digest, definition_version, fingerprint``."""
    from sagakit.ports.workflow_store import (  # noqa: PLC0415 - see the docstring
        WorkflowRecord,
        WorkflowStatus,
    )

    return WorkflowRecord(
        app=row[0],
        instance_id=row[1],
        status=WorkflowStatus(row[2]),
        step=row[3],
        input=loads_or_none(row[4]),
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
        result=loads_or_none(row[15]),
        start_digest=row[16],
        definition_version=row[17],
        fingerprint=row[18],
    )


def workflow_history_entry(row: Row) -> WorkflowHistoryEntry:
    """``app, instance_id, step, attempt, outcome, detail, error,
    recorded_at``."""
    from sagakit.ports.workflow_store import (  # noqa: PLC0415 - see the docstring
        WorkflowHistoryEntry,
    )

    return WorkflowHistoryEntry(
        app=row[0],
        instance_id=row[1],
        step=row[2],
        attempt=row[3],
        outcome=row[4],
        detail=loads_or_none(row[5]),
        error=row[6],
        recorded_at=row[7],
    )


def workflow_columns(record: WorkflowRecord) -> tuple[Any, ...]:
    """The columns from ``status`` to ``error``, as both dialects bind them."""
    return (
        record.status.value,
        record.step,
        dumps_or_none(record.input),
        record.due_at,
        dumps(record.state),
        record.version,
        record.attempts,
        record.transitions,
        record.error,
    )


def workflow_definition(record: WorkflowRecord) -> tuple[int, str | None]:
    """``definition_version, fingerprint``, bound last by both dialects."""
    return (record.definition_version, record.fingerprint)


def workflow_insert_params(
    record: WorkflowRecord, history: Sequence[WorkflowHistoryEntry]
) -> tuple[Any, ...]:
    """What ``workflow_insert`` binds on PostgreSQL and MySQL."""
    return (
        record.app,
        record.instance_id,
        *workflow_columns(record),
        record.created_at,
        record.updated_at,
        record.owner,
        record.lease_until,
        workflow_history_json(history),
        dumps_or_none(record.result),
        record.start_digest,
        *workflow_definition(record),
    )


def workflow_save_params(
    record: WorkflowRecord,
    expected_version: int,
    history: Sequence[WorkflowHistoryEntry],
) -> tuple[Any, ...]:
    """What ``workflow_save`` binds on PostgreSQL and MySQL
    (``workflow_save_many`` on PostgreSQL: per column)."""
    return (
        record.app,
        record.instance_id,
        *workflow_columns(record),
        record.updated_at,
        record.owner,
        expected_version,
        record.lease_until,
        workflow_history_json(history),
        dumps_or_none(record.result),
        *workflow_definition(record),
    )


def workflow_save_problem(
    record: WorkflowRecord, expected_version: int, saved: Any, found: Any
) -> Exception | None:
    """What a workflow save raises when its statement said ``saved`` and
    ``found`` (the instance exists), if anything."""
    if saved:
        return None
    name = f"workflow {record.app}/{record.instance_id}"
    if found:
        return stale_workflow(name, expected_version)
    return SagaNotFound(f"{name} does not exist")


def stale_workflow(name: str, expected_version: int) -> ConcurrencyError:
    return ConcurrencyError(
        f"{name}: version {expected_version} is stale; another writer saved it first"
    )


def per_version(query: str, version: int | None) -> str:
    """The named workflow query for one definition ``version`` (it searches
    one range of the wake-up index), or its ``_any_version`` twin."""
    return query if version is not None else f"{query}_any_version"


def by_due_then_id(records: list[WorkflowRecord]) -> list[WorkflowRecord]:
    return sorted(records, key=lambda r: (r.due_at or 0.0, r.instance_id))
