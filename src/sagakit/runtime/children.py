"""A parent's dealings with its child instances, through the store.

Finding the child of a sub-saga step (:func:`current`), waiting for it to
end (:func:`ended`: woken at once by :class:`ChildWatch` when it ends in
this process, else looking at the store every ``Driver.child_poll`` seconds
at most), and asking it something on behalf of the parent's step:
roll back, resume a failed rollback, retry after a failure past its pivot
(:func:`request`), or cancel (:func:`cancel_children`). Each request is a
history line of the child naming the parent's step and the attempt that
asked (:func:`request_line`), so that an attempt repeated after a crash
sees it asked already (:func:`asked`) and does not ask twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sagakit.engine.commands import CancelSteps
from sagakit.engine.events import Event, RetryRequested
from sagakit.engine.state import ParentLink, SagaStatus
from sagakit.errors import (
    ConcurrencyError,
    ErrorInfo,
    SagaError,
    SagaNotFound,
    StateError,
    error_info,
)
from sagakit.ports.store import HistoryEntry, SagaRecord, saga_line
from sagakit.runtime.instance import Instance

if TYPE_CHECKING:
    from sagakit.runtime.driver import Driver

logger = logging.getLogger("sagakit.runtime.orchestrator")


FIRST_POLL = 0.05
"""Seconds before the first look at a child driven elsewhere (then doubling
up to ``Driver.child_poll``)."""


def child_id(parent_id: str, step: str, attempt: int = 1) -> str:
    """The id of the child that attempt ``attempt`` of ``step`` runs:
    ``<parent>/<step>``, and ``<parent>/<step>#<attempt>`` for the fresh
    child of an operator's retry."""
    base = f"{parent_id}/{step}"
    return base if attempt <= 1 else f"{base}#{attempt}"


class ChildWatch:
    """Wakes the watchers of a saga, in this process, when it ends."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Event]] = {}

    def ended(self, saga_id: str) -> None:
        for event in self._waiting.pop(saga_id, ()):
            event.set()

    @contextlib.contextmanager
    def waiting(self, saga_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiting.setdefault(saga_id, []).append(event)
        try:
            yield event
        finally:
            waiters = self._waiting.get(saga_id, [])
            if event in waiters:
                waiters.remove(event)
            if not waiters:
                self._waiting.pop(saga_id, None)


async def get(driver: Driver, saga_id: str) -> SagaRecord | None:
    try:
        return await driver.store.get(saga_id)
    except SagaNotFound:
        return None


async def current(
    driver: Driver, parent: ParentLink, attempt: int
) -> SagaRecord | None:
    """The child that ``attempt`` of the step runs or ran: its own, or the
    latest of an earlier attempt (an operator's retry of a child that
    failed past its pivot retries that child)."""
    for n in range(attempt, 0, -1):
        record = await get(driver, child_id(parent.saga_id, parent.step, n))
        if record is not None:
            return record
    return None


async def ended(driver: Driver, saga_id: str) -> SagaRecord | None:
    """The child once it ended (None if it vanished): woken by its end in
    this process, else looking at the store from time to time."""
    delay = FIRST_POLL
    while True:
        with driver.children.waiting(saga_id) as ended:
            record = await get(driver, saga_id)
            if record is None or record.status.terminal:
                return record
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await ended.wait()
        delay = min(delay * 2, driver.child_poll)


def child_error(cid: str, record: SagaRecord | None) -> ErrorInfo:
    """The error a parent step records for a child that did not succeed (or
    whose rollback failed): the child's error, or its first compensation
    error when its compensations failed, with what happened in the message."""
    if record is None:
        return ErrorInfo("SubSagaError", f"sub-saga {cid} no longer exists")
    state = record.state
    cause = state.error or ErrorInfo("SubSagaFailed", "")
    message = f"sub-saga {cid} ended {record.status.value}"
    if state.failed_step:
        message += f" ({state.failed_step} failed)"
    if cause.message:
        message += f": {cause.message}"
    failures = state.compensation_errors
    if failures:
        cause = failures[0][1]
        message += "; " + "; ".join(
            f"compensating {step} failed: {error.message}" for step, error in failures
        )
    return ErrorInfo(cause.type, message, cause.traceback)


async def retried(
    driver: Driver, record: SagaRecord, parent: ParentLink, attempt: int
) -> SagaRecord | None:
    """``record`` (an earlier attempt's child) if this attempt retries it:
    it failed past its pivot (it is asked to retry), or it was asked to
    already; None if this attempt starts a fresh child."""
    if await asked(driver, record.saga_id, parent, "action", attempt):
        return record
    if record.status is not SagaStatus.FAILED:
        return None
    line = request_line(record.saga_id, "retry", parent, attempt, driver)
    refused = await request(driver, record, RetryRequested(line.started_at), line)
    return record if refused is None else None


def request_line(
    saga_id: str, action: str, parent: ParentLink, attempt: int, driver: Driver
) -> HistoryEntry:
    """The child's history line of a request of its parent's step: who
    asked, and for which attempt of the step's action (``retry``) or
    compensation (``rollback``, ``resume``)."""
    kind = "action" if action == "retry" else "compensation"
    said = {"by": f"parent {parent.saga_id}"} | _asking(parent, kind, attempt)
    return saga_line(saga_id, f"{action}_requested", driver.clock.now(), said)


def _asking(parent: ParentLink, kind: str, attempt: int) -> dict[str, Any]:
    return {"parent": parent.saga_id, "step": parent.step, kind: attempt}


async def asked(
    driver: Driver, saga_id: str, parent: ParentLink, kind: str, attempt: int
) -> bool:
    """Whether ``attempt`` of the parent step's ``kind`` (action or
    compensation) asked the child something already (a request survives a
    crash of the parent's worker)."""
    asking = _asking(parent, kind, attempt)
    for line in await driver.store.history(saga_id):
        said = line.result if line.kind == "saga" else None
        if isinstance(said, dict) and all(said.get(k) == v for k, v in asking.items()):
            return True
    return False


async def request(
    driver: Driver, record: SagaRecord, event: Event, line: HistoryEntry
) -> ErrorInfo | None:
    """Apply ``event`` to the child and drive it here; the error if it is
    refused (None too if the child moved meanwhile: it is looked at again)."""
    if record.saga_id in driver.active:
        return None  # driven here already: its end will come
    try:
        saga = driver.definition(record)
    except SagaError as exc:
        return error_info(exc)
    child = Instance.from_record(saga, record)
    try:
        commands = await driver.apply(child, event, [line])
    except StateError as exc:
        return error_info(exc)
    except (ConcurrencyError, SagaNotFound):
        return None
    driver.spawn(child, commands)
    return None


def cancel_children(driver: Driver, inst: Instance, command: CancelSteps) -> None:
    """A fail-fast group cancels its sub-saga steps still running: their
    children are cancelled (as by an operator: steps in flight finish, the
    completed ones are compensated) ``grace`` seconds from now, unless they
    ended by then. If this process dies first, the children run to their
    end and are rolled back with their parent."""
    for name in command.steps:
        if not inst.saga.step(name).is_sub_saga:
            continue
        parent = ParentLink(inst.state.saga_id, name)
        attempt = inst.state.step(name).attempts
        task = asyncio.create_task(_cancel(driver, parent, attempt, command.grace))
        driver.tasks.add(task)
        task.add_done_callback(driver.tasks.discard)


async def _cancel(
    driver: Driver, parent: ParentLink, attempt: int, grace: float
) -> None:
    if grace > 0:
        await driver.clock.sleep(grace)
    cid = child_id(parent.saga_id, parent.step, attempt)
    try:
        await driver.request(
            cid,
            "cancel",
            reason=f"a step of the group of {parent.step} failed in its parent",
            by=f"parent {parent.saga_id}",
        )
    except SagaError as exc:  # ended, not made yet, past its pivot, paused
        logger.info(
            "sub-saga not cancelled",
            extra={"action": "child_not_cancelled", "saga_id": cid, "reason": str(exc)},
        )
