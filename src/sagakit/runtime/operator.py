"""Operator actions on saga instances: retry, resume, cancel, pause, unpause.

Each action is an engine event committed like any other transition
(:meth:`~sagakit.runtime.driver.Driver.request`). When this process drives
the instance, the action goes through its queue; else the instance is
loaded, the action applied and committed, and the instance driven here (or,
with ``hand_over``, released for a worker to claim).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from sagakit.engine.events import (
    CancelRequested,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    UnpauseRequested,
)
from sagakit.ports.store import HistoryEntry, saga_line

if TYPE_CHECKING:
    from sagakit.runtime.client import SagaClient
    from sagakit.runtime.orchestrator import Orchestrator

logger = logging.getLogger(__name__)

Action = Literal["retry", "resume", "cancel", "pause", "unpause"]
ACTIONS: tuple[Action, ...] = ("retry", "resume", "cancel", "pause", "unpause")
Request = (
    RetryRequested
    | ResumeRequested
    | CancelRequested
    | PauseRequested
    | UnpauseRequested
)


async def request(
    orchestrator: Orchestrator | SagaClient,
    saga_id: str,
    action: Action,
    *,
    reason: str | None = None,
    by: str = "operator",
    hand_over: bool = False,
) -> None:
    """Apply ``action`` to ``saga_id``; ``StateError`` if it does not fit.

    ``retry``: a ``failed`` saga runs its failed steps again. ``resume``: a
    ``compensation_failed`` saga retries its failed compensation and goes on
    rolling back. ``cancel``: a ``running`` saga stops going forward and
    compensates (refused past the pivot). ``pause``: a running or
    compensating saga starts no new step (steps in flight finish and are
    recorded) until ``unpause``, which starts what was held. With
    ``hand_over``, the saga is not driven here but left (released) for a
    worker to claim.
    """
    await orchestrator.driver.request(
        saga_id, action, reason=reason, by=by, hand_over=hand_over
    )


def requested(
    saga_id: str, action: Action, now: float, *, reason: str | None, by: str
) -> tuple[Request, HistoryEntry]:
    """The engine event of ``action`` and its history line."""
    if action == "retry":
        event: Request = RetryRequested(now)
    elif action == "resume":
        event = ResumeRequested(now)
    elif action == "pause":
        event = PauseRequested(now, reason or f"paused by {by}")
    elif action == "unpause":
        event = UnpauseRequested(now)
    else:
        event = CancelRequested(now, reason or f"cancelled by {by}")
    said = {"by": by} | ({"reason": reason} if reason else {})
    entry = saga_line(saga_id, f"{action}_requested", now, said)
    return event, entry


def applied(saga_id: str, action: Action, by: str) -> None:
    """Log an action once it is committed (or queued for the driver)."""
    logger.info(
        "operator action applied",
        extra={"action": f"{action}_requested", "saga_id": saga_id, "by": by},
    )
