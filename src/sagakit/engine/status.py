"""The statuses of a saga and of its steps, stored verbatim.

Apart from :mod:`sagakit.engine.state` (which re-exports them) so that
what only names statuses (the CLI's option help) loads no state classes.
"""

from __future__ import annotations

from enum import StrEnum


class SagaStatus(StrEnum):
    """Where a saga instance is. Stored verbatim as the lowercase value."""

    RUNNING = "running"
    COMPENSATING = "compensating"
    SUCCEEDED = "succeeded"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    FAILED = "failed"
    """A step after the pivot failed for good: nothing can be compensated."""

    @property
    def terminal(self) -> bool:
        # by identity: a set lookup would hash the member in Python (Enum.__hash__)
        return self is not _RUNNING and self is not _COMPENSATING


_TERMINAL = frozenset(
    {
        SagaStatus.SUCCEEDED,
        SagaStatus.COMPENSATED,
        SagaStatus.COMPENSATION_FAILED,
        SagaStatus.FAILED,
    }
)


_RUNNING = SagaStatus.RUNNING
_COMPENSATING = SagaStatus.COMPENSATING


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    COMPENSATION_SKIPPED = "compensation_skipped"
    """An operator decided the step stays done: its compensation never runs."""
