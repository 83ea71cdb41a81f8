"""Workflow-style sagas: steps that choose the next step, durable timers and
external events.

::

    app = WorkflowApp("payments", SQLiteWorkflowStore("app.db"))

    @app.step
    async def deposit(input, state, set_state, logger):
        return webhook("TIME_OUT", delay=300)   # runs in 5 min unless called

    @app.step
    def webhook(input, state, set_state, logger):
        ...                                     # None: the instance succeeded

    await app.start("order-1", deposit, {"amount": 10})
    await app.call("order-1", "webhook", "CONFIRMED")
    await app.run(stop_event)
"""

from __future__ import annotations

from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowStatus,
    WorkflowStore,
)
from sagakit.workflow.app import WorkflowApp
from sagakit.workflow.step import Step, StepCall

__all__ = [
    "Step",
    "StepCall",
    "WorkflowApp",
    "WorkflowHistoryEntry",
    "WorkflowRecord",
    "WorkflowStatus",
    "WorkflowStore",
]
