"""Committing a decision: the history lines, the outbox and the inbox of
one transition in the driver's commit, then what goes out after it.

A saga without remote steps (most local ones) takes a lean path, which
builds no message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sagakit.definition.saga import Saga
from sagakit.engine.commands import Command, Decision
from sagakit.observability.observer import STEP_KINDS, Observer
from sagakit.ports.store import HistoryEntry, InboxEntry
from sagakit.runtime.executor import unsendable
from sagakit.runtime.instance import Instance
from sagakit.runtime.records import saga_line
from sagakit.runtime.unawaited import outgoing

if TYPE_CHECKING:
    from sagakit.runtime.driver import Driver


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
    await driver.commit(inst, state, history, outbox=outbox, inbox=inbox)
    inst.pending_history.clear()
    report_steps(driver.observer, saga, entries)
    if built is not None:
        if outbox:
            driver.send(outbox)
        for command, exc in built.unsendable:  # next, as if the step had failed
            inst.queue.put_nowait(unsendable(state.saga_id, command, exc, now))
    return decision.commands


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
