"""Operator actions on saga instances: retry, resume, cancel, pause, unpause.

Each action is an engine event committed like any other transition
(:meth:`~sagakit.runtime.driver.Driver.request`), in one of three ways:

- this driver drives the instance: the action goes through its queue and is
  applied before the outcome of the step running now;
- another live driver holds its lease (another process, or another
  orchestrator of this one, that drives it now): the action is committed
  without taking the lease, so that driver keeps the instance; its next
  commit is refused, and it reloads the instance and applies its outcome
  again (:mod:`sagakit.runtime.refresh`), so a step in flight is recorded;
- nobody drives it (no lease, an expired one, or a dead owner's): the
  instance is loaded, the action applied and committed, and the instance
  driven here (or, with ``hand_over``, released for a worker to claim).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from sagakit.engine.decide import decide
from sagakit.engine.events import (
    CancelRequested,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    UnpauseRequested,
)
from sagakit.errors import ConcurrencyError
from sagakit.ports.store import HistoryEntry, saga_line
from sagakit.runtime import delivery, owners
from sagakit.runtime.instance import Instance

if TYPE_CHECKING:
    from sagakit.runtime.client import SagaClient
    from sagakit.runtime.driver import Driver
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


ATTEMPTS = 3
"""Times a request is decided again when the instance moved meanwhile."""


async def handle(
    driver: Driver,
    saga_id: str,
    action: Action,
    *,
    reason: str | None,
    by: str,
    hand_over: bool,
) -> None:
    """Apply ``action`` through ``driver`` (see the module)."""
    event, entry = requested(saga_id, action, driver.clock.now(), reason=reason, by=by)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            await _handle_once(driver, saga_id, event, entry, hand_over=hand_over)
            break
        except ConcurrencyError:  # it moved between the read and the commit
            if attempt == ATTEMPTS:
                raise
    applied(saga_id, action, by)


async def _handle_once(
    driver: Driver,
    saga_id: str,
    event: Request,
    entry: HistoryEntry,
    *,
    hand_over: bool,
) -> None:
    inst = driver.active.get(saga_id)
    if inst is not None and inst.driver is not None and not inst.driver.done():
        decide(inst.saga, inst.state, event)  # refuse now what will not fit
        # applied by the driver before the outcome of the step running now
        await delivery.enqueue(inst, event, [entry], None, strict=True, wait=False)
        return
    owner = await _live_owner(driver, saga_id)
    record = await driver.store.get(saga_id)
    inst = Instance.from_record(driver.definition(record), record)
    if owner is not None:  # it keeps the instance, and reloads it
        inst.visiting = True
        await driver.apply(inst, event, [entry])  # may refuse
        return
    commands = await driver.apply(inst, event, [entry])  # may refuse
    if not hand_over:
        driver.spawn(inst, commands)
    elif driver.lease is not None:
        await driver.store.release(driver.worker_id, [saga_id])


async def _live_owner(driver: Driver, saga_id: str) -> str | None:
    """The owner that drives ``saga_id`` now, other than ``driver``, if any."""
    lease = (await driver.store.leases([saga_id])).get(saga_id)
    if lease is None or lease.owner is None or not lease.live:
        return None
    if owners.drives(lease.owner, saga_id, me=driver.worker_id):
        return lease.owner
    return None


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
