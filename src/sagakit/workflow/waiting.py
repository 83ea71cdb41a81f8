"""Instances an app cannot run here, reported instead of left silent.

A workflow instance runs only on the version of its app it started on, and
only where its pending step is registered in that version
(:mod:`sagakit.workflow.versions`); an app never claims any other. It must
not sit pending silently: an idle app marks such instances waiting. Their
``error`` says why, e.g. ``waiting: step 'x' is not registered on app 'pay'
here ...`` or ``waiting: needs pay v1, not registered here (have v2)``
(``WorkflowRecord.waiting``), with a ``waiting`` history line. They stay
pending, so a process that has their version and step claims and runs them
as usual (and clears the reason).

An instance left running by a worker that died (its lease expired) is
reported the same way, and made pending again: as a claim would, the step
it was running runs again where it can.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from sagakit.errors import ConcurrencyError, SagaNotFound
from sagakit.ports.workflow_store import (
    WAITING,
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowStatus,
)
from sagakit.workflow.versions import reason

if TYPE_CHECKING:
    from sagakit.workflow.app import WorkflowApp

logger = logging.getLogger("sagakit.workflow")

REPORT_INTERVAL = 10.0
"""Seconds between two looks of an idle ``run`` loop."""
SCAN_LIMIT = 500
"""Pending instances looked at per report, newest first."""


async def report_unregistered(app: WorkflowApp, *, every: float = 0.0) -> list[str]:
    """Mark waiting the instances of ``app`` that it cannot run (each once):
    pending ones, and running ones whose lease expired; returns their ids.
    With ``every``, does nothing if the app looked less than ``every``
    seconds ago."""
    now = app.clock.now()
    last = app.reported_at
    if every and last is not None and now - last < every:
        return []
    app.reported_at = now
    marked = []
    for record in await _unclaimed(app, now):
        why = reason(app, record)
        if why is None:
            continue
        why = f"{WAITING}{why}"
        if record.error == why and record.status is WorkflowStatus.PENDING:
            continue
        line = WorkflowHistoryEntry(
            app=app.name,
            instance_id=record.instance_id,
            step=record.step,
            attempt=record.attempts,
            outcome="waiting",
            recorded_at=now,
            error=why,
        )
        moved = replace(
            record,
            status=WorkflowStatus.PENDING,
            due_at=now if record.due_at is None else record.due_at,
            owner=None,
            lease_until=None,
            error=why,
            version=record.version + 1,
            updated_at=now,
        )
        try:
            await app.store.save(moved, record.version, [line])
        except (ConcurrencyError, SagaNotFound):
            continue  # it moved meanwhile
        logger.warning(
            "workflow instance waits for a process that can run it",
            extra={
                "action": "workflow_waiting",
                "app": app.name,
                "instance_id": record.instance_id,
                "step": record.step,
                "reason": why,
            },
        )
        marked.append(record.instance_id)
    return marked


async def _unclaimed(app: WorkflowApp, now: float) -> list[WorkflowRecord]:
    """The newest pending instances of ``app``, and its running ones whose
    lease expired (their worker is gone), up to :data:`SCAN_LIMIT` each."""
    found = await app.store.list_workflows(
        status=WorkflowStatus.PENDING, app=app.name, limit=SCAN_LIMIT
    )
    running = await app.store.list_workflows(
        status=WorkflowStatus.RUNNING, app=app.name, limit=SCAN_LIMIT
    )
    return found + [
        r for r in running if r.lease_until is not None and r.lease_until < now
    ]
