"""An instance an operator changed from another process while it is driven here.

An operator's pause, unpause or cancel of an instance that another process
drives (it holds a live lease) is committed without taking the instance over
(:mod:`sagakit.runtime.operator`): its owner keeps driving it. The owner
finds out when its next commit is refused because the version moved, or,
for a paused instance it parks, from a look at the stored versions every
:data:`PAUSED_LOOK` seconds. Then, if its lease is still its own, it
reloads the state, applies again through ``decide`` what it was committing
(the outcome of a step in flight is recorded, as if the operator's request
had come through its own queue) and starts the local work the change issued
(the steps an unpause let go). An instance another process claimed (the
lease is no longer this driver's) is still given up before its next step.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sagakit.definition.saga import Saga
from sagakit.engine.commands import Command, Compensate, FinishSaga, RunStep
from sagakit.engine.events import Event
from sagakit.engine.state import SagaState, StepStatus
from sagakit.errors import ConcurrencyError
from sagakit.ports.store import HistoryEntry
from sagakit.runtime.instance import Instance, Refresh, work_key

if TYPE_CHECKING:
    from sagakit.runtime.driver import Driver

logger = logging.getLogger("sagakit.runtime.orchestrator")

MAX_RELOADS = 3
"""Times an outcome is applied again after reloading a changed instance."""

PAUSED_LOOK = 1.0
"""Seconds between two looks at whether the paused instances parked here
were changed (unpaused) by another process."""


async def reload(driver: Driver, inst: Instance) -> bool:
    """After a commit of ``inst`` was refused: True if this driver still holds
    its lease and ``inst`` now has the stored state (with the local work that
    state expects and nothing runs here in ``inst.owed``); False if another
    process took it (or its definition changed), so it must be given up."""
    saga_id, saga = inst.state.saga_id, inst.saga
    if driver.lease is None or inst.lost:
        return False
    kept = await driver.store.renew(driver.worker_id, [saga_id], lease=driver.lease)
    if saga_id not in kept:
        return False
    record = await driver.store.get(saga_id)
    if record.definition_version != saga.version or record.fingerprint not in (
        None,
        saga.fingerprint,
    ):
        return False
    if record.version > inst.version:
        logger.info(
            "saga changed by an operator while driven here; reloaded",
            extra={
                "action": "saga_reloaded",
                "saga_id": saga_id,
                "version": record.version,
            },
        )
        # the context stays this process's: a step in flight may have changed it
        inst.state, inst.version = record.state, record.version
    inst.owed = {
        work_key(command): command
        for command in outstanding(saga, record.state, inst.running)
    }
    if inst.state.locks is not None:  # it may wait for locks: watched
        driver.locks.start()
    return True


def outstanding(
    saga: Saga[Any], state: SagaState, running: set[tuple[str, str]]
) -> list[RunStep | Compensate]:
    """The local steps and compensations ``state`` has under way, not held
    by a pause, that are not ``running`` here: issued by a decision this
    driver did not make (an unpause committed elsewhere)."""
    if state.status.terminal:
        return []
    found: list[RunStep | Compensate] = []
    for name, step in state.steps.items():
        if name in state.held:
            continue
        spec = saga.step(name)
        command: RunStep | Compensate
        if step.status is StepStatus.RUNNING and not spec.is_remote:
            command = RunStep(name, step.attempts)
        elif step.status is StepStatus.COMPENSATING and not spec.compensation_is_remote:
            command = Compensate(name, step.compensation_attempts)
        else:
            continue
        if work_key(command) not in running:
            found.append(command)
    return found


def owed(inst: Instance, commands: tuple[Command, ...]) -> tuple[Command, ...]:
    """``commands`` and the work a reload found owed (each step once)."""
    if not inst.owed:
        return commands
    issued = {work_key(c) for c in commands if isinstance(c, (RunStep, Compensate))}
    extra = tuple(c for key, c in inst.owed.items() if key not in issued)
    inst.owed = {}
    return (*commands, *extra)


async def apply_owned(
    driver: Driver, inst: Instance, event: Event, entries: list[HistoryEntry]
) -> tuple[Command, ...]:
    """``driver.apply``; when the commit is refused because an operator
    changed the instance under this driver's lease, reload it and apply the
    event again (``ConcurrencyError`` if the instance was taken over)."""
    for _ in range(MAX_RELOADS):
        try:
            return await driver.apply(inst, event, entries)
        except ConcurrencyError:
            if not await reload(driver, inst):
                raise
            if inst.state.status.terminal:  # ended meanwhile: nothing to apply
                return (FinishSaga(inst.state.status),)
    raise ConcurrencyError(
        f"saga {inst.state.saga_id} kept changing while its outcome was committed"
    )


async def look_at_paused(driver: Driver) -> None:
    """Wake the paused instances parked here whose stored version moved
    while this driver holds their lease (an unpause from another process)."""
    parked = {
        saga_id: inst
        for saga_id, inst in driver.active.items()
        if inst.parked and inst.state.paused
    }
    if not parked:
        return
    for saga_id, lease in (await driver.store.leases(list(parked))).items():
        inst = parked[saga_id]
        mine = lease.owner == driver.worker_id
        if mine and lease.version > inst.version and inst.parked:
            inst.queue.put_nowait(Refresh())
