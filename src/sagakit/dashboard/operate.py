"""What the saga page offers an operator beyond the status actions: the
actions on one compensation (which steps each applies to) and a fork (from
which steps), from the saga's state alone. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sagakit.engine.state import SagaStatus, StepStatus
from sagakit.ports.store import HistoryEntry, SagaRecord
from sagakit.runtime.fork import forked_into

_ROLLING_BACK = (SagaStatus.COMPENSATING, SagaStatus.COMPENSATION_FAILED)


@dataclass(frozen=True, slots=True)
class Repair:
    """An action on one compensation, and the steps it applies to now."""

    action: str
    label: str
    help: str
    steps: tuple[str, ...]


def repairs(record: SagaRecord) -> list[Repair]:
    """The actions on one compensation that fit the saga now (none for a
    saga that is not rolling back, or that a worker drives unpaused: the
    action would be refused)."""
    state = record.state
    listed = state.compensations
    if record.status not in _ROLLING_BACK or not listed:
        return []
    if record.status is SagaStatus.COMPENSATING and not state.paused:
        return []
    failed = tuple(
        n for n in listed if state.step(n).status is StepStatus.COMPENSATION_FAILED
    )
    settle = tuple(
        n
        for n in listed
        if state.step(n).status is not StepStatus.COMPENSATING or n in state.held
    )
    offered = [
        Repair(
            "retry_compensation",
            "Retry compensation",
            "Run this compensation, which failed for good, again (after fixing "
            "its cause); then the rollback goes on.",
            failed,
        ),
        Repair(
            "mark_compensated",
            "Mark compensated",
            "You undid this step by hand, outside the saga: its compensation "
            "counts as done without running.",
            settle,
        ),
        Repair(
            "skip_compensation",
            "Skip compensation",
            "Leave this step done: its compensation never runs.",
            settle,
        ),
    ]
    return [r for r in offered if r.steps]


def fork_steps(record: SagaRecord, history: Sequence[HistoryEntry]) -> list[str]:
    """The steps a fork of the saga may re-run from (none while it runs, for
    a sub-saga, or once it was forked)."""
    state = record.state
    if not record.status.terminal or state.parent is not None:
        return []
    if forked_into(history) is not None:
        return []
    return list(state.steps)
