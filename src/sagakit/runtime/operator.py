"""Operator actions on saga instances: retry, resume, cancel, pause,
unpause, and on one compensation: retry it, mark the step compensated,
skip it (see :mod:`sagakit.engine.repair`).

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

An action on one compensation is refused while a live driver runs the
saga forward or back (it would race the compensations that driver
starts): pause the saga first, or wait until it ends.

Every action writes one audit line in the saga's history, in the commit
that applies it: ``<action>_requested``, with who (``by``), why
(``reason``), the step acted on, and what changed (``changed``: the
saga's status, its steps' statuses, paused or not, as the decision made
them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from sagakit.engine.decide import decide
from sagakit.engine.events import (
    CancelRequested,
    CompensationRetryRequested,
    CompensationSkipped,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    StepMarkedCompensated,
    UnpauseRequested,
)
from sagakit.engine.repair import changes
from sagakit.engine.state import SagaState
from sagakit.errors import ConcurrencyError, StateError
from sagakit.ports.store import HistoryEntry
from sagakit.runtime import delivery, owners
from sagakit.runtime.fork import forked_into
from sagakit.runtime.instance import Instance

if TYPE_CHECKING:
    from sagakit.runtime.client import SagaClient
    from sagakit.runtime.driver import Driver
    from sagakit.runtime.orchestrator import Orchestrator

logger = logging.getLogger(__name__)

Action = Literal[
    "retry",
    "resume",
    "cancel",
    "pause",
    "unpause",
    "retry_compensation",
    "mark_compensated",
    "skip_compensation",
]
ACTIONS: tuple[Action, ...] = get_args(Action)
STEP_ACTIONS: frozenset[Action] = frozenset(
    {"retry_compensation", "mark_compensated", "skip_compensation"}
)
"""The actions on one step's compensation: they name the step."""
Request = (
    RetryRequested
    | ResumeRequested
    | CancelRequested
    | PauseRequested
    | UnpauseRequested
    | CompensationRetryRequested
    | StepMarkedCompensated
    | CompensationSkipped
)


async def request(
    orchestrator: Orchestrator | SagaClient,
    saga_id: str,
    action: Action,
    *,
    reason: str | None = None,
    by: str = "operator",
    hand_over: bool = False,
    step: str | None = None,
) -> None:
    """Apply ``action`` to ``saga_id``; ``StateError`` if it does not fit.

    ``retry``: a ``failed`` saga runs its failed steps again. ``resume``: a
    ``compensation_failed`` saga retries its failed compensation and goes on
    rolling back. ``cancel``: a ``running`` saga stops going forward and
    compensates (refused past the pivot). ``pause``: a running or
    compensating saga starts no new step (steps in flight finish and are
    recorded) until ``unpause``, which starts what was held.
    ``retry_compensation``, ``mark_compensated``, ``skip_compensation``:
    act on the compensation of ``step`` (see :mod:`sagakit.engine.repair`).
    With ``hand_over``, the saga is not driven here but left (released)
    for a worker to claim.
    """
    await orchestrator.driver.request(
        saga_id, action, reason=reason, by=by, hand_over=hand_over, step=step
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
    step: str | None = None,
) -> None:
    """Apply ``action`` through ``driver`` (see the module)."""
    if (step is None) == (action in STEP_ACTIONS):
        wanted = "needs" if step is None else "takes no"
        raise StateError(f"saga {saga_id}: {action} {wanted} a step")
    now = driver.clock.now()
    event = requested(action, now, reason=reason, by=by, step=step)
    said = {"by": by} | ({"reason": reason} if reason else {})
    said |= {"step": step} if step is not None else {}
    audit = Audit(saga_id, action, now, said)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            await _handle_once(driver, saga_id, event, audit, hand_over=hand_over)
            break
        except ConcurrencyError:  # it moved between the read and the commit
            if attempt == ATTEMPTS:
                raise
    applied(saga_id, action, by)


@dataclass(frozen=True, slots=True)
class Audit:
    """The audit line of one action, once its decision is known."""

    saga_id: str
    action: Action
    at: float
    said: dict[str, Any]

    def line(self, before: SagaState, after: SagaState) -> HistoryEntry:
        return HistoryEntry(
            saga_id=self.saga_id,
            step=self.said.get("step"),
            kind="saga",
            attempt=0,
            outcome=f"{self.action}_requested",
            started_at=self.at,
            finished_at=self.at,
            result=self.said | {"changed": changes(before, after)},
        )

    @property
    def on_step(self) -> bool:
        return self.action in STEP_ACTIONS


async def _handle_once(
    driver: Driver,
    saga_id: str,
    event: Request,
    audit: Audit,
    *,
    hand_over: bool,
) -> None:
    inst = driver.active.get(saga_id)
    if inst is not None and inst.driver is not None and not inst.driver.done():
        _not_while_driven(inst.state, audit, "this process")
        decision = decide(inst.saga, inst.state, event)  # refuse now what will not fit
        entry = audit.line(inst.state, decision.state)
        # applied by the driver before the outcome of the step running now
        await delivery.enqueue(inst, event, [entry], None, strict=True, wait=False)
        return
    owner = await _live_owner(driver, saga_id)
    record = await driver.store.get(saga_id)
    if record.status.terminal:
        into = forked_into(await driver.store.history(saga_id))
        if into is not None:
            raise StateError(
                f"saga {saga_id} was forked into {into}, which owns its "
                f"effects now: act on {into} instead"
            )
    inst = Instance.from_record(driver.definition(record), record)
    decision = decide(inst.saga, inst.state, event)  # may refuse
    if owner is not None:  # it keeps the instance, and reloads it
        _not_while_driven(inst.state, audit, f"worker {owner}")
        inst.visiting = True
        await driver.transition(
            inst, decision, [audit.line(inst.state, decision.state)]
        )
        return
    before = inst.state
    commands = await driver.transition(
        inst, decision, [audit.line(before, decision.state)]
    )
    if not hand_over:
        driver.spawn(inst, commands)
    elif driver.lease is not None:
        await driver.store.release(driver.worker_id, [saga_id])


def _not_while_driven(state: SagaState, audit: Audit, who: str) -> None:
    """An action on one compensation waits until nobody drives the saga, or
    it is paused (else it races the compensations its driver starts)."""
    if audit.on_step and not state.paused and not state.status.terminal:
        raise StateError(
            f"saga {audit.saga_id} is {state.status.value} and {who} drives it: "
            f"pause it first (sagakit pause {audit.saga_id}), or wait until it ends"
        )


async def _live_owner(driver: Driver, saga_id: str) -> str | None:
    """The owner that drives ``saga_id`` now, other than ``driver``, if any."""
    lease = (await driver.store.leases([saga_id])).get(saga_id)
    if lease is None or lease.owner is None or not lease.live:
        return None
    if owners.drives(lease.owner, saga_id, me=driver.worker_id):
        return lease.owner
    return None


def requested(
    action: Action, now: float, *, reason: str | None, by: str, step: str | None
) -> Request:
    """The engine event of ``action`` (``step``: the one it acts on)."""
    if action == "retry":
        return RetryRequested(now)
    if action == "resume":
        return ResumeRequested(now)
    if action == "pause":
        return PauseRequested(now, reason or f"paused by {by}")
    if action == "unpause":
        return UnpauseRequested(now)
    if action == "cancel":
        return CancelRequested(now, reason or f"cancelled by {by}")
    assert step is not None  # noqa: S101 - handle() checked it
    if action == "retry_compensation":
        return CompensationRetryRequested(step, now)
    if action == "mark_compensated":
        return StepMarkedCompensated(step, now, reason or f"undone by {by}")
    return CompensationSkipped(step, now, reason or f"skipped by {by}")


def applied(saga_id: str, action: Action, by: str) -> None:
    """Log an action once it is committed (or queued for the driver)."""
    logger.info(
        "operator action applied",
        extra={"action": f"{action}_requested", "saga_id": saga_id, "by": by},
    )
