"""The status of a workflow instance, stored verbatim.

Apart from :mod:`sagakit.ports.workflow_store` (which re-exports it) so that
what only names statuses (the CLI's option help) loads no record classes.
"""

from __future__ import annotations

from enum import StrEnum


class WorkflowStatus(StrEnum):
    """Where a workflow instance is. Stored verbatim as the lowercase value."""

    PENDING = "pending"
    """Waiting for its step call to be due (a timer, a retry or an event)."""
    RUNNING = "running"
    """A worker claimed it and runs its step."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (WorkflowStatus.SUCCEEDED, WorkflowStatus.FAILED)
