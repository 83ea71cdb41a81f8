"""Instances pending on a step that is not registered here.

A workflow instance whose pending step this app does not register is never
claimed by it; it must not sit pending silently. An idle app marks such
instances waiting: their ``error`` says ``waiting: step 'x' is not
registered on app 'pay' ...`` (``WorkflowRecord.waiting``), with a
``waiting`` history line. They stay pending, so a process of the app that
has the step claims and runs them as usual (and clears the reason).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from sagakit.errors import ConcurrencyError, SagaNotFound
from sagakit.ports.workflow_store import WAITING, WorkflowHistoryEntry, WorkflowStatus

if TYPE_CHECKING:
    from sagakit.workflow.app import WorkflowApp

logger = logging.getLogger("sagakit.workflow")

REPORT_INTERVAL = 10.0
"""Seconds between two looks of an idle ``run`` loop."""
SCAN_LIMIT = 500
"""Pending instances looked at per report, newest first."""


async def report_unregistered(app: WorkflowApp, *, every: float = 0.0) -> list[str]:
    """Mark waiting the pending instances of ``app`` whose step it does not
    register (each once); returns their ids. With ``every``, does nothing if
    the app looked less than ``every`` seconds ago."""
    now = app.clock.now()
    last = app.reported_at
    if every and last is not None and now - last < every:
        return []
    app.reported_at = now
    pending = await app.store.list_workflows(
        status=WorkflowStatus.PENDING, app=app.name, limit=SCAN_LIMIT
    )
    known = ", ".join(sorted(app.steps)) or "none"
    marked = []
    for record in pending:
        if record.step is None or record.step in app.steps:
            continue
        reason = (
            f"{WAITING}step {record.step!r} is not registered on app "
            f"{app.name!r} here (steps: {known})"
        )
        if record.error == reason:
            continue
        line = WorkflowHistoryEntry(
            app=app.name,
            instance_id=record.instance_id,
            step=record.step,
            attempt=record.attempts,
            outcome="waiting",
            recorded_at=now,
            error=reason,
        )
        moved = replace(
            record, error=reason, version=record.version + 1, updated_at=now
        )
        try:
            await app.store.save(moved, record.version, [line])
        except (ConcurrencyError, SagaNotFound):
            continue  # it moved meanwhile
        logger.warning(
            "workflow instance waits for its step",
            extra={
                "action": "workflow_waiting",
                "app": app.name,
                "instance_id": record.instance_id,
                "step": record.step,
            },
        )
        marked.append(record.instance_id)
    return marked
