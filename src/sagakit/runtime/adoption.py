"""Taking over a stored instance: to drive it (``adopt``, after a claim or
a recover), or to apply a reply or a deadline to it (``load``); one whose
definition is not registered here is marked waiting instead."""

from __future__ import annotations

import logging
from typing import Any

from sagakit.definition.saga import Saga
from sagakit.engine.commands import Command
from sagakit.engine.decide import decide
from sagakit.engine.events import SagaResumed
from sagakit.engine.unawaited import unawaited
from sagakit.errors import (
    ConcurrencyError,
    DefinitionUnavailable,
    SagaNotFound,
    StateError,
)
from sagakit.messaging.envelope import MalformedMessage
from sagakit.ports.store import HistoryEntry, SagaRecord, saga_line
from sagakit.runtime import refresh
from sagakit.runtime.delivery import refuse_queued
from sagakit.runtime.driver import Driver
from sagakit.runtime.instance import Instance
from sagakit.runtime.retry import retry_store

# the driver's log lines, under its logger as before they moved here
logger = logging.getLogger("sagakit.runtime.driver")


async def adopt(driver: Driver, record: SagaRecord, how: str) -> bool:
    """Drive an instance another worker (or a producer) left; False if lost
    or if its definition is not here (then it is marked waiting)."""
    saga = await definition_for(driver, record)
    if saga is None:
        return False
    saga_id = record.saga_id
    inst = Instance.from_record(saga, record)
    now = driver.clock.now()
    entry = saga_line(saga_id, how, now, {"worker": driver.worker_id})
    driver.own(inst)
    try:
        commands = await _resume(driver, inst, entry, now, _crashed(driver, record))
    except (ConcurrencyError, StateError, SagaNotFound):
        driver.drop(saga_id)
        refuse_queued(inst, "another worker took it over")
        return False  # another worker took it
    except BaseException:
        # not driven: left active, its lease would be renewed forever
        driver.drop(saga_id)
        refuse_queued(inst, "its takeover failed")
        raise
    logger.info(
        "saga resumed",
        extra={
            "action": f"saga_{how}",
            "saga_id": saga_id,
            "saga": saga.name,
            "worker": driver.worker_id,
        },
    )
    driver.spawn(inst, commands)
    return True


async def _resume(
    driver: Driver, inst: Instance, entry: HistoryEntry, now: float, crashed: bool
) -> tuple[Command, ...]:
    """Commit ``SagaResumed`` (or, if it changes nothing, keep the line for
    the next commit); an operator's change committed since the claim is
    reloaded first (:func:`refresh.reload`). ``crashed``: taken from an
    owner that stopped (see ``SagaResumed``)."""
    for _ in range(refresh.MAX_RELOADS):
        resumed = SagaResumed(now, driver.max_crashes, crashed)
        decision = decide(inst.saga, inst.state, resumed)
        # a fire-and-forget compensation to send again goes through the outbox
        resend = any(unawaited(inst.saga, c) for c in decision.commands)
        if decision.state == inst.state and not resend:
            # nothing to commit yet: the line joins the next transition's commit
            inst.pending_history.append(entry)
            return decision.commands
        lines = [entry]
        parked = decision.state.parked
        if parked is not None and inst.state.parked is None:
            lines.append(saga_line(inst.state.saga_id, "parked", now, parked))
            locks = decision.state.locks
            logger.warning(
                "poison saga parked",
                extra={
                    "action": "saga_parked",
                    "saga_id": inst.state.saga_id,
                    "reason": parked,
                    # kept while it is parked: sagas queued for them wait
                    "keeps_locks": sorted(locks.held) if locks else [],
                },
            )
        try:
            return await driver.transition(inst, decision, lines)
        except ConcurrencyError:
            if not await refresh.reload(driver, inst):
                raise
            inst.owed.clear()  # SagaResumed decides what runs on what it reloaded
            continue
    raise ConcurrencyError(f"saga {inst.state.saga_id} kept changing as it was adopted")


def _crashed(driver: Driver, record: SagaRecord) -> bool:
    """Whether ``record`` (as a claim returned it) was taken from another
    owner, one that stopped without handing it back: only then can a step
    found in flight have been running, and count as a crash."""
    taken = record.previous_owner
    return taken is not None and taken != driver.worker_id


async def definition_for(driver: Driver, record: SagaRecord) -> Saga[Any] | None:
    """The definition ``record`` started on, or None when it is not
    registered here or changed shape (``record`` is then marked waiting)."""
    try:
        return driver.definition(record)
    except DefinitionUnavailable as exc:
        await mark_waiting(driver, record, exc.reason)
        return None


async def mark_waiting(driver: Driver, record: SagaRecord, reason: str) -> None:
    """Record (once) why this process leaves ``record`` alone."""
    if record.waiting is not None and record.waiting.startswith(reason):
        return  # known already (perhaps with more said about it)
    await driver.store.mark_waiting(record.saga_id, reason)
    logger.warning(
        "saga waits for its definition",
        extra={
            "action": "saga_waiting",
            "saga_id": record.saga_id,
            "saga": record.saga_name,
            "reason": reason,
        },
    )


async def load(driver: Driver, saga_id: str) -> Instance | None:
    """The instance of ``saga_id`` driven here, adopted if need be so that
    a reply or a deadline can be applied; None if the saga ended."""
    inst = driver.active.get(saga_id)
    if inst is not None:
        return inst
    try:  # a reply must not fail (and be dead-lettered) in an outage
        record = await retry_store(
            lambda: driver.store.get(saga_id),
            clock=driver.clock,
            limit=driver.store_retry,
        )
    except SagaNotFound:
        raise MalformedMessage(f"reply for unknown saga {saga_id}") from None
    if record.status.terminal:
        logger.info(
            "reply for a finished saga dropped",
            extra={"action": "reply_late", "saga_id": saga_id},
        )
        return None
    if saga_id in driver.active:  # adopted meanwhile
        return driver.active[saga_id]
    try:
        saga = driver.definition(record)
    except DefinitionUnavailable as exc:
        await mark_waiting(driver, record, exc.reason)
        raise
    inst = Instance.from_record(saga, record)
    driver.spawn(inst, ())
    return inst
