"""The workflow records and history lines the workflow store contracts write."""

from __future__ import annotations

from typing import Any

from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowStatus,
)

APP = "payments"
STEPS = ("debit", "credit")


def make(
    instance_id: str,
    *,
    app: str = APP,
    step: str = "debit",
    due_at: float | None = 100.0,
    status: WorkflowStatus = WorkflowStatus.PENDING,
    state: dict[str, Any] | None = None,
    input: Any = None,
) -> WorkflowRecord:
    return WorkflowRecord(
        app=app,
        instance_id=instance_id,
        status=status,
        step=step,
        input={"amount": 10, "note": "é"} if input is None else input,
        due_at=due_at,
        state=state if state is not None else {"tries": 0},
        version=1,
        attempts=0,
        transitions=0,
        error=None,
        created_at=50.0,
        updated_at=50.0,
    )


def line(instance_id: str, outcome: str, **kw: Any) -> WorkflowHistoryEntry:
    return WorkflowHistoryEntry(
        app=kw.pop("app", APP),
        instance_id=instance_id,
        step=kw.pop("step", "debit"),
        attempt=kw.pop("attempt", 0),
        outcome=outcome,
        recorded_at=kw.pop("recorded_at", 50.0),
        **kw,
    )
