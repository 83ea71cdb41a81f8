"""How an instance stops being driven by this process: it finished, it was
handed over while draining, or it was abandoned (taken over by another
worker, cancelled, or stopped by an error, which leaves it resumable).

Each way lets the driver forget the instance (:meth:`Driver.drop`), stops
what watched its children, and settles what waits for it: the ``done``
future of a caller of ``run`` gets the saga's result, its cancellation or
the error, and deliveries still queued are answered. Separate from
:mod:`sagakit.runtime.driver`, which only calls these where the loop ends,
once per instance.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NoReturn

from sagakit.errors import ConcurrencyError, StoreError
from sagakit.runtime import delivery, subsaga
from sagakit.runtime.instance import Delivery, Instance, report_finished
from sagakit.runtime.result import SagaResult

if TYPE_CHECKING:
    from sagakit.runtime.driver import Driver

logger = logging.getLogger("sagakit.runtime.orchestrator")


def finish(driver: Driver, inst: Instance) -> None:
    """``inst`` ended (its ``FinishSaga`` committed): report and resolve it."""
    state = inst.state
    driver.drop(state.saga_id)
    subsaga.stop_watching(inst)
    driver.children.ended(state.saga_id)  # its parent's watcher, if here
    while not inst.queue.empty():  # replies that came too late: nothing to do
        item = inst.queue.get_nowait()
        if isinstance(item, Delivery) and not item.handled.done():
            item.handled.set_result(None)
    if not inst.finished_elsewhere:  # else that worker logged and reported it
        report_finished(driver.observer, inst)
    if inst.done is not None and not inst.done.done():
        exc = inst.exceptions.get(state.failed_step or "")
        inst.done.set_result(
            SagaResult.from_state(state, inst.context, exc, saga=inst.saga)
        )


def hand_over(driver: Driver, inst: Instance) -> None:
    """Draining: stop driving ``inst`` between two steps (released later)."""
    saga_id = inst.state.saga_id
    driver.handed.append(saga_id)
    logger.info(
        "saga handed over",
        extra={"action": "saga_handed_over", "saga_id": saga_id},
    )
    abandon(driver, inst, ConcurrencyError(f"saga {saga_id} was handed over"))


def abandon(driver: Driver, inst: Instance, exc: BaseException | None) -> None:
    """Stop driving ``inst`` here: its tasks are cancelled, its queue
    refused, and a waiting caller gets ``exc`` (None: cancelled)."""
    driver.drop(inst.state.saga_id)
    delivery.refuse_queued(inst, "it is no longer driven here")
    for task in list(inst.tasks):
        task.cancel()
    subsaga.stop_watching(inst)
    if inst.done is not None and not inst.done.done():
        if exc is None:
            inst.done.cancel()
        else:
            inst.done.set_exception(exc)


def stopped(saga_id: str, exc: Exception) -> None:
    """Log an instance stopped by an error: a store's refusal (after its
    retries) on one line, anything else with its traceback."""
    if isinstance(exc, StoreError):
        logger.warning(
            "saga stopped: the store refused its save; it stays resumable",
            extra={"action": "saga_stopped", "saga_id": saga_id, "error": str(exc)},
        )
    else:
        logger.exception(
            "saga stopped by an internal error; it stays resumable",
            extra={"action": "saga_stopped", "saga_id": saga_id},
        )


def lease_lost(saga_id: str) -> NoReturn:
    raise ConcurrencyError(f"saga {saga_id}: another worker took its lease")
