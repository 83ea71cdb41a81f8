"""Operator actions on saga instances: retry, resume, cancel.

Each action is an engine event committed like any other transition. When
this process drives the instance, the action goes through its queue; else
the instance is loaded, the action applied and committed, and the instance
driven here (or, with ``hand_over``, released for a worker to claim).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from sagakit.engine.decide import decide
from sagakit.engine.events import CancelRequested, ResumeRequested, RetryRequested
from sagakit.ports.store import HistoryEntry
from sagakit.runtime.instance import Instance

if TYPE_CHECKING:
    from sagakit.runtime.orchestrator import Orchestrator

logger = logging.getLogger(__name__)

Action = Literal["retry", "resume", "cancel"]
ACTIONS: tuple[Action, ...] = ("retry", "resume", "cancel")


async def request(
    orchestrator: Orchestrator,
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
    compensates (refused past the pivot).
    """
    now = orchestrator.clock.now()
    if action == "retry":
        event: RetryRequested | ResumeRequested | CancelRequested = RetryRequested(now)
    elif action == "resume":
        event = ResumeRequested(now)
    else:
        event = CancelRequested(now, reason or f"cancelled by {by}")
    note = {"by": by} | ({"reason": reason} if reason else {})
    entry = HistoryEntry(
        saga_id, None, "saga", 0, f"{action}_requested", now, now, note
    )
    inst = orchestrator._active.get(saga_id)
    if inst is not None and inst.driver is not None and not inst.driver.done():
        decide(inst.saga, inst.state, event)  # refuse now what will not fit
        # applied by the driver before the outcome of the step running now
        await orchestrator._enqueue(inst, event, [entry], None, strict=True, wait=False)
    else:
        record = await orchestrator.store.get(saga_id)
        saga = orchestrator.definition(record.saga_name)
        inst = Instance(
            saga,
            record.state,
            saga.context.model_validate(record.context),
            record.version,
            record.created_at,
            record.idempotency_key,
        )
        commands = await orchestrator._apply(inst, event, [entry])  # may refuse
        if hand_over:
            if orchestrator.lease is not None:
                await orchestrator.store.release(orchestrator.worker_id, [saga_id])
        else:
            orchestrator._active[saga_id] = inst
            orchestrator._spawn(inst, commands)
    logger.info(
        "operator action applied",
        extra={"action": f"{action}_requested", "saga_id": saga_id, "by": by},
    )
