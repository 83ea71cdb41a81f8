"""Workflow-style sagas: steps that choose the next step, durable timers and
external events.

::

    app = WorkflowApp("payments", SQLiteWorkflowStore("app.db"))

    @app.step
    async def deposit(input, state, set_state, logger):
        return webhook("TIME_OUT", delay=300)   # runs in 5 min unless called

    @app.step
    def webhook(input, state, set_state, logger):
        if input == "DECLINED":
            raise FatalError("card declined")   # failed at once, no retries
        return {"paid": True}                   # succeeded, with this result

    await app.start("order-1", deposit, {"amount": 10})
    await app.call("order-1", "webhook", "CONFIRMED")
    await app.run(stop_event)
    await app.result("order-1")                 # {"paid": True}

Starting an existing id again with another call raises
:class:`SagaAlreadyExists` (the same call returns it).
"""

from __future__ import annotations

import warnings
from typing import Any

from sagakit.errors import FatalError, SagaAlreadyExists
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowStatus,
    WorkflowStore,
)
from sagakit.workflow.app import WorkflowApp
from sagakit.workflow.step import WorkflowCall, WorkflowStep

__all__ = [
    "FatalError",
    "SagaAlreadyExists",
    "WorkflowApp",
    "WorkflowCall",
    "WorkflowHistoryEntry",
    "WorkflowRecord",
    "WorkflowStatus",
    "WorkflowStep",
    "WorkflowStore",
]

_RENAMED = {"Step": WorkflowStep, "StepCall": WorkflowCall}


def __getattr__(name: str) -> Any:
    """The earlier names (``Step``, ``StepCall``) still import, with a
    warning: a workflow step is not a saga's :class:`sagakit.Step`."""
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(
            f"sagakit.workflow.{name} is now {new.__name__}",
            DeprecationWarning,
            stacklevel=2,
        )
        return new
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
