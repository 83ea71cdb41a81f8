"""Committing a decision: the history lines, the outbox and the inbox of
one transition in the driver's commit, then what goes out after it; and the
commit itself (:func:`commit`): the saved record at the next version, under
the driver's lease, its store errors retried.

A saga without remote steps (most local ones) takes a lean path, which
builds no message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sagakit.definition.saga import Saga
from sagakit.engine.commands import Command, Decision
from sagakit.engine.state import SagaState
from sagakit.errors import StoreError
from sagakit.observability.observer import STEP_KINDS, Observer
from sagakit.ports.store import HistoryEntry, InboxEntry, OutboxMessage
from sagakit.runtime import locking
from sagakit.runtime.executor import unsendable
from sagakit.runtime.instance import Instance, context_json
from sagakit.runtime.records import saga_line, saga_record
from sagakit.runtime.retry import retry_store
from sagakit.runtime.unawaited import outgoing

if TYPE_CHECKING:
    from sagakit.runtime.driver import Driver

logger = logging.getLogger("sagakit.runtime.orchestrator")


async def commit_decision(
    driver: Driver,
    inst: Instance,
    decision: Decision,
    entries: list[HistoryEntry],
    inbox: InboxEntry | None = None,
) -> tuple[Command, ...]:
    """Commit ``decision`` (the locks it asked for settled, see
    :mod:`~sagakit.runtime.locking`) with the history ``entries``, the
    messages its remote commands send and ``inbox``; send them after the
    commit. Returns the decision's commands."""
    saga = inst.saga
    built, outbox, now = None, None, 0.0
    if saga.sends:  # only remote steps send: no message to build otherwise
        now = driver.clock.now()
        built = outgoing(
            saga,
            decision,
            inst.context,
            reply_to=driver.reply_queue,
            now=now,
            observer=driver.observer,
            trace=inst.trace,
            reply_key=driver.reply_key,
        )
        decision = built.decision  # fire-and-forget compensations sent: done
        entries = [*entries, *built.entries]
        outbox = driver.hold(built.messages, now)
    history = [*inst.pending_history, *entries] if inst.pending_history else entries
    state = decision.state
    if state.status.terminal:
        ended = now if built is not None else driver.clock.now()
        history = [*history, saga_line(state.saga_id, state.status.value, ended)]
    await commit(driver, inst, state, history, outbox=outbox, inbox=inbox)
    inst.pending_history.clear()
    report_steps(driver.observer, saga, entries)
    if built is not None:
        if outbox:
            driver.send(outbox)
        for command, exc in built.unsendable:  # next, as if the step had failed
            inst.queue.put_nowait(unsendable(state.saga_id, command, exc, now))
    return decision.commands


async def commit(
    driver: Driver,
    inst: Instance,
    state: SagaState,
    history: list[HistoryEntry],
    *,
    outbox: list[OutboxMessage] | None = None,
    inbox: InboxEntry | None = None,
) -> None:
    """Save at the next version; retry store errors for ``store_retry`` s.

    With a ``lease``, the save leases the instance to this worker, unless
    ``inst.visiting`` (then its lease is left as it is)."""
    saga = inst.saga
    record = saga_record(
        state.saga_id,
        state.saga_name,
        state.status,
        inst.version + 1,
        state,
        context_json(inst.context),
        inst.idempotency_key,
        inst.created_at,
        history[-1].finished_at if history else driver.clock.now(),
        state.next_deadline,
        saga.version,
        saga.fingerprint,
    )
    extra: dict[str, Any] = {} if inst.visiting else driver.ownership()
    if outbox:
        extra["outbox"] = outbox
    if inbox is not None:
        extra["inbox"] = inbox
    saves, change = driver.saves, None
    if state.locks is not inst.state.locks:  # only sagas with locks: rare
        saves, history, change = locking.saving(driver, inst, record, history, extra)
    try:
        await saves.save(record, inst.version, history, **extra)
    except StoreError as exc:
        await retry_store(
            lambda: saves.save(record, inst.version, history, **extra),
            clock=driver.clock,
            limit=driver.store_retry,
            logger=logger,
            message="save failed; retrying",
            extra={"action": "save_retry", "saga_id": state.saga_id},
            failed=exc,
        )
    inst.version += 1
    inst.state = state
    if change is not None:
        driver.locks.notice(change, state)


def report_steps(
    observer: Observer, saga: Saga[Any], entries: list[HistoryEntry]
) -> None:
    """Tell ``observer`` of the step outcomes just committed (if it listens:
    the no-op hook is not called for each)."""
    if type(observer).step_finished is Observer.step_finished:
        return
    for entry in entries:
        if entry.kind in STEP_KINDS:
            observer.step_finished(saga.name, entry)
