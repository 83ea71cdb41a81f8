"""Applying a reply, a deadline or an operator's request to an instance.

A late or duplicate reply changes nothing. If another worker moved the saga
on meanwhile, the instance is reloaded from the store and the reply applied
to the fresh state; so is one an operator changed from another process
while this driver holds its lease (:mod:`sagakit.runtime.refresh`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sagakit.engine.commands import Command, FinishSaga
from sagakit.engine.events import Event
from sagakit.errors import (
    ConcurrencyError,
    DuplicateMessage,
    SagaError,
    SagaNotFound,
    StateError,
    StoreError,
)
from sagakit.ports.store import HistoryEntry, InboxEntry, SagaRecord, SagaStore
from sagakit.runtime import refresh
from sagakit.runtime.instance import Delivery, Instance

if TYPE_CHECKING:
    from sagakit.runtime.driver import Driver

logger = logging.getLogger("sagakit.runtime.orchestrator")

MAX_RELOADS = 3
"""Times a reply is applied again after reloading a saga another worker moved."""


async def deliver(
    driver: Driver, inst: Instance, item: Delivery
) -> tuple[Command, ...]:
    """Apply a reply or a deadline; a late or duplicate one changes nothing.

    If another worker moved the saga on meanwhile (a reply of a parallel
    step, or one that the broker gave to that worker), the instance is
    reloaded from the store and the reply applied to the fresh state:
    the saga is not dropped here and the reply not sent back to the queue.
    """
    for _ in range(MAX_RELOADS):
        outcome = await _deliver_once(driver, inst, item)
        if outcome is not None:
            return outcome
    conflict = ConcurrencyError(
        f"saga {inst.state.saga_id} kept moving on in another worker; "
        "its reply goes back to the queue"
    )
    if not item.handled.done():
        item.handled.set_exception(conflict)
    raise conflict


async def _deliver_once(
    driver: Driver, inst: Instance, item: Delivery
) -> tuple[Command, ...] | None:
    """What ``Driver.apply`` decided; None if the saga was reloaded (apply again)."""
    try:
        commands = await driver.apply(inst, item.event, item.entries, item.inbox)
    except DuplicateMessage:
        logger.info(
            "duplicate reply dropped",
            extra={"action": "reply_duplicate", "saga_id": inst.state.saga_id},
        )
        commands = ()
        # applied by another worker, maybe: then this copy is behind
        record = await _stored(driver.store, inst)
        stale = record is not None and record.version != inst.version
        if record is not None and stale and _reload(inst, record):
            commands = _caught_up(inst, item, record)
    except (StateError, ConcurrencyError, SagaNotFound) as exc:
        if isinstance(exc, ConcurrencyError) and await refresh.reload(driver, inst):
            return None  # an operator's change under this lease: apply again
        record = None
        if item.inbox is not None:
            try:
                record = await _stored(driver.store, inst)
            except StoreError:
                if not isinstance(exc, ConcurrencyError):
                    raise
        stale = record is not None and record.version != inst.version
        moved = isinstance(exc, ConcurrencyError) or stale
        if moved and record is not None and not item.strict and _reload(inst, record):
            if not record.status.terminal:
                return None
            return _caught_up(inst, item, record)
        if isinstance(exc, ConcurrencyError):
            if not item.handled.done():
                item.handled.set_exception(exc)
            raise
        if item.strict:
            if not item.handled.done():
                item.handled.set_exception(exc)
            return ()
        if stale:
            # another worker moved the saga on (a reply it applied took the
            # lease): this reply may be for a step only it knows of, so it
            # must not be dropped here; the transport delivers it again
            conflict = ConcurrencyError(
                f"saga {inst.state.saga_id}: version {inst.version} is "
                f"stale; a reply for it goes back to the queue ({exc})"
            )
            if not item.handled.done():
                item.handled.set_exception(conflict)
            raise conflict from exc
        logger.info(
            "late reply dropped",
            extra={
                "action": "reply_stale",
                "saga_id": inst.state.saga_id,
                "reason": str(exc),
            },
        )
        commands = ()
    except BaseException as exc:
        if not item.handled.done():
            item.handled.set_exception(exc)
        raise
    if not item.handled.done():
        item.handled.set_result(None)
    return commands


def _caught_up(
    inst: Instance, item: Delivery, record: SagaRecord
) -> tuple[Command, ...]:
    """After a reload: nothing to do, or the end of a saga another worker
    finished (this copy reports nothing)."""
    if not record.status.terminal:
        return ()
    inst.finished_elsewhere = True
    if not item.handled.done():
        item.handled.set_result(None)
    return (FinishSaga(record.status),)


def _reload(inst: Instance, record: SagaRecord) -> bool:
    """Replace ``inst``'s state with ``record`` (the store's) if no local
    step runs for it here; False if it cannot be. History lines not
    written yet (a ``claimed`` line) stay pending: they go with the next
    commit."""
    if inst.in_flight or inst.tasks:
        return False
    logger.info(
        "saga moved on in another worker; reloaded",
        extra={
            "action": "saga_reloaded",
            "saga_id": inst.state.saga_id,
            "version": record.version,
        },
    )
    inst.state = record.state
    inst.version = record.version
    inst.context = inst.saga.context.model_validate(record.context)
    return True


async def _stored(store: SagaStore, inst: Instance) -> SagaRecord | None:
    """The saga of ``inst`` as the store has it (None: it is gone)."""
    try:
        return await store.get(inst.state.saga_id)
    except SagaNotFound:
        return None


async def enqueue(
    inst: Instance,
    event: Event,
    entries: list[HistoryEntry],
    inbox: InboxEntry | None,
    *,
    strict: bool = False,
    wait: bool = True,
) -> None:
    """Hand an event from outside to the instance's task; with ``wait``,
    return once it is applied (and raise what applying it raised)."""
    handled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    inst.queue.put_nowait(Delivery(event, entries, inbox, handled, strict))
    if not wait:
        handled.add_done_callback(_consume_result)
        return
    driver = inst.driver
    if driver is None:
        # being taken over here (adoption commits first): its task, once
        # spawned, applies it; if the takeover fails it is refused
        # (:func:`refuse_queued`). Returning now would let a reply be
        # acknowledged before it is applied, and lost with a failed takeover.
        await handled
        return
    if driver.done():
        return  # nothing will apply it here; the store still has the truth

    def stopped(_: object) -> None:
        if not handled.done():
            handled.set_exception(
                SagaError(
                    f"saga {inst.state.saga_id} stopped before a delivery was applied"
                )
            )

    # a callback, not asyncio.wait(): no waiter task or future per delivery
    driver.add_done_callback(stopped)
    try:
        await handled  # cancelled with this task: the delivery is applied anyway
    finally:
        driver.remove_done_callback(stopped)


def refuse_queued(inst: Instance, why: str) -> None:
    """Fail the deliveries waiting in ``inst``'s queue, which will not be
    applied here (its takeover failed, or its driving stopped): a reply's
    transport delivers it again, to whoever drives the saga then."""
    while not inst.queue.empty():
        item = inst.queue.get_nowait()
        if isinstance(item, Delivery) and not item.handled.done():
            item.handled.set_exception(
                SagaError(f"saga {inst.state.saga_id}: {why}; not applied here")
            )


def _consume_result(done: asyncio.Future[None]) -> None:
    """Nobody awaits a fire-and-forget delivery: log what it raised."""
    if not done.cancelled() and done.exception() is not None:
        logger.warning(
            "operator action refused",
            extra={"action": "operator_refused", "error": str(done.exception())},
        )
