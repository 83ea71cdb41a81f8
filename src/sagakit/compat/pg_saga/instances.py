"""Writing pg-saga instances: ``start`` and ``call`` as single commits.

They write the workflow row themselves rather than through
:meth:`WorkflowApp.start`/``call``: pg-saga starts (and redirects) an
instance at any step name, registered in this process or not (a web process
often registers none), and any process registering the step runs it. So
the rows carry no fingerprint: every version-1 app of the saga's name that
registers the pending step may claim them.
"""

from __future__ import annotations

from typing import Any

from sagakit.errors import ConcurrencyError, SagaAlreadyExists, StateError
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowStatus,
    WorkflowStore,
)
from sagakit.workflow import WorkflowApp, delivery
from sagakit.workflow.step import start_digest


def _due(now: float, delay: float | None) -> float:
    """pg-saga: due after ``delay`` seconds, now when None (or negative)."""
    return now + max(0.0, float(delay or 0.0))


async def create(
    app: WorkflowApp,
    store: WorkflowStore,
    instance: str,
    *,
    step: str,
    input: Any,
    state: Any,
    delay: float | None,
) -> None:
    """Commit a new instance pending on ``step`` (JSON ``input`` and
    ``state``); ``SagaAlreadyExists`` if ``instance`` exists."""
    now = app.clock.now()
    initial = {"value": state}
    record = WorkflowRecord(
        app=app.name,
        instance_id=instance,
        status=WorkflowStatus.PENDING,
        step=step,
        input=input,
        due_at=_due(now, delay),
        state=initial,
        version=1,
        attempts=0,
        transitions=0,
        error=None,
        created_at=now,
        updated_at=now,
        start_digest=start_digest(step, input, initial),
    )
    line = WorkflowHistoryEntry(
        app=app.name,
        instance_id=instance,
        step=step,
        attempt=0,
        outcome="started",
        recorded_at=now,
        detail={"delay": delay},
    )
    stored, created = await store.create(record, [line])
    if not created:
        raise SagaAlreadyExists(
            f"saga {app.name}/{instance} exists already (status {stored.status.value})",
            saga_id=instance,
            status=stored.status.value,
            app=app.name,
        )


async def deliver(
    app: WorkflowApp,
    store: WorkflowStore,
    instance: str,
    *,
    step: str,
    input: Any,
    delay: float | None,
) -> None:
    """Make pending ``instance``'s next call ``step(input)``, due after
    ``delay``; ``ConcurrencyError`` if it runs now, ``StateError`` if it
    finished, ``SagaNotFound`` if there is none."""
    record = await store.get(app.name, instance)
    where = f"saga {app.name}/{instance}"
    if record.status is WorkflowStatus.RUNNING:
        raise ConcurrencyError(
            f"{where} is running step {record.step}; call() changes pending sagas only"
        )
    if record.status.terminal:
        raise StateError(f"{where} has finished ({record.status.value})")
    now = app.clock.now()
    await delivery.deliver(
        store,
        record,
        step=step,
        value=input,
        due_at=_due(now, delay),
        attempt=0,
        detail={"input": input, "delay": delay},
        now=now,
    )
