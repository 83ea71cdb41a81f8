"""A value delivered to a pending workflow instance, written once for the
app's ``call`` and for compatibility layers that move an instance to a step.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowStore,
)


async def deliver(
    store: WorkflowStore,
    record: WorkflowRecord,
    *,
    step: str,
    value: Any,
    due_at: float,
    attempt: int,
    detail: Any,
    now: float,
) -> None:
    """Save pending ``record`` to run ``step`` on ``value`` at ``due_at``
    (its attempts and error cleared), with a ``delivered`` history line of
    ``attempt`` saying ``detail``; ``ConcurrencyError`` if it changed since
    it was read."""
    moved = replace(
        record,
        step=step,
        input=value,
        due_at=due_at,
        attempts=0,
        error=None,
        version=record.version + 1,
        updated_at=now,
    )
    line = WorkflowHistoryEntry(
        app=record.app,
        instance_id=record.instance_id,
        step=step,
        attempt=attempt,
        outcome="delivered",
        recorded_at=now,
        detail=detail,
    )
    await store.save(moved, record.version, [line])
