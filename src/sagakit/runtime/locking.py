"""Semantic locks at run time: taken in the commit that starts a step, and
the steps that wait for them woken.

A decision that asks for locks (``AcquireLocks``) is committed by
:func:`transition`: each asking step's keys are rendered from the context and
the results, and the step is tried as granted (``LocksAcquired`` folded into
the decision, so the commit that starts it takes its keys, all at once); if
the store refuses (:class:`~sagakit.errors.LockUnavailable`), the refused
steps are folded as ``LocksBusy`` instead (they queue, or fail) and the
decision is committed again. A refusal changes nothing in the store, so the
instance is never left holding half a step's keys.

Every commit writes the difference between the instance's lock state before
and after it (:func:`~sagakit.ports.locks.lock_change`) in its own save, out
of any group commit. A :class:`~sagakit.runtime.lockwatch.LockWatch` per
driver wakes the instances it drives that queue for locks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sagakit.engine import locks
from sagakit.engine.commands import AcquireLocks, Command, Decision
from sagakit.engine.decide import decide
from sagakit.engine.events import (
    Event,
    LockKeyFailed,
    LocksAcquired,
    LocksBusy,
)
from sagakit.engine.state import ErrorInfo, SagaState
from sagakit.errors import LockUnavailable, SagaError
from sagakit.ports.locks import LockChange, lock_change
from sagakit.ports.store import HistoryEntry, InboxEntry, SagaRecord
from sagakit.runtime.instance import Instance

if TYPE_CHECKING:
    from sagakit.runtime.driver import Driver

logger = logging.getLogger("sagakit.runtime.orchestrator")


def asks(commands: Sequence[Command]) -> bool:
    """Some of ``commands`` ask for locks."""
    return any(isinstance(c, AcquireLocks) for c in commands)


async def transition(
    driver: Driver,
    inst: Instance,
    decision: Decision,
    entries: list[HistoryEntry],
    inbox: InboxEntry | None,
) -> tuple[Command, ...]:
    """Commit ``decision``, whose commands ask for locks (see the module);
    returns the commands left to run here."""
    refused: dict[str, LockUnavailable] = {}
    asking = _asking(decision)
    for _ in range(2 * len(asking) + 2):
        folded, lines = _fold(inst, decision, asking, refused, driver.clock.now())
        if (
            folded.state == inst.state
            and not folded.commands
            and not entries
            and not lines
            and inbox is None
        ):
            return ()  # still waiting as it was: nothing to commit
        try:
            return await driver.commit_decision(inst, folded, [*entries, *lines], inbox)
        except LockUnavailable as exc:
            for step in _refused_steps(inst.state, folded.state, asking, exc):
                refused[step] = exc
    raise SagaError(
        f"saga {inst.state.saga_id}: its locks kept changing hands; "
        "it is asked again when they are freed"
    )


async def ask_for(
    driver: Driver, inst: Instance, commands: tuple[Command, ...]
) -> tuple[Command, ...]:
    """Take the locks ``commands`` ask for, issued by a commit that did not
    take them (a create, a resume that changed nothing); returns the
    commands to run here."""
    asked = tuple(c for c in commands if isinstance(c, AcquireLocks))
    rest = tuple(c for c in commands if not isinstance(c, AcquireLocks))
    taken = await driver.transition(inst, Decision(inst.state, asked), [])
    return (*rest, *taken)


def _asking(decision: Decision) -> list[str]:
    return list(
        dict.fromkeys(c.step for c in decision.commands if isinstance(c, AcquireLocks))
    )


def _refused_steps(
    before: SagaState, tried: SagaState, asking: list[str], exc: LockUnavailable
) -> list[str]:
    """The steps a refusal is about: those whose keys it names as busy, or
    (a deadlock) those that would have started to queue."""
    held = {} if tried.locks is None else tried.locks.held
    waits = {} if tried.locks is None else tried.locks.waits
    was = {} if before.locks is None else before.locks.waits
    found = []
    for step in asking:
        mine = {k for k, h in held.items() if h.step == step}
        wait = waits.get(step)
        if wait is not None:
            mine |= set(wait.keys)
        queued_now = (
            wait is not None
            and wait.keys
            and (step not in was or was[step].keys != wait.keys)
        )
        if mine & set(exc.holders) or (exc.cycle and queued_now):
            found.append(step)
    return found or list(asking)


def _fold(
    inst: Instance,
    decision: Decision,
    asking: list[str],
    refused: dict[str, LockUnavailable],
    now: float,
) -> tuple[Decision, list[HistoryEntry]]:
    """``decision`` with each asking step granted its locks, or refused
    them as ``refused`` says, or failed (its keys cannot be made); and the
    history lines that say so."""
    saga, state = inst.saga, decision.state
    commands = list(locks.without(decision.commands, asking))
    lines: list[HistoryEntry] = []
    results = state.results
    for step in asking:
        if step not in locks.waiting(state):
            continue  # the saga stopped going forward meanwhile
        since = _since(state, step, now)
        event: Event
        try:
            keys = locks.keys_of(saga.step(step), inst.context, results)
        except LookupError as exc:
            error = ErrorInfo("LockKeyError", f"step {step!r}: a lock key: {exc}")
            event = LockKeyFailed(step, error, now)
        else:
            no = refused.get(step)
            if no is None:
                event = LocksAcquired(step, keys, now)
            else:
                busy = {k: s for k, s in no.holders.items() if k in keys}
                event = LocksBusy(step, keys, busy, now, no.cycle)
        before = state
        moved = decide(saga, state, event)
        state = moved.state
        commands.extend(moved.commands)
        line = _line(inst, before, state, event, since=since, now=now)
        if line is not None:
            lines.append(line)
    return Decision(state, tuple(commands)), lines


def lock_line(
    saga_id: str,
    step: str,
    outcome: str,
    *,
    since: float,
    now: float,
    result: Any = None,
    error: ErrorInfo | None = None,
) -> HistoryEntry:
    """A history line about ``step``'s locks (``kind == "lock"``)."""
    return HistoryEntry(
        saga_id=saga_id,
        step=step,
        kind="lock",
        attempt=0,
        outcome=outcome,
        started_at=since,
        finished_at=now,
        result=result,
        error=error,
    )


def _since(state: SagaState, step: str, now: float) -> float:
    wait = None if state.locks is None else state.locks.waits.get(step)
    return now if wait is None else wait.since


def _line(
    inst: Instance,
    before: SagaState,
    after: SagaState,
    event: LocksAcquired | LocksBusy | LockKeyFailed,
    *,
    since: float,
    now: float,
) -> HistoryEntry | None:
    """The history line of a lock event (None: it changed nothing)."""
    step = event.step
    result: Any = None
    error = None
    if after.step(step).status is not before.step(step).status:
        outcome = "acquired" if isinstance(event, LocksAcquired) else "failed"
        error = None if outcome == "acquired" else after.step(step).error
        if isinstance(event, LocksAcquired):
            result = {"keys": list(dict.fromkeys(event.keys))}
        elif isinstance(event, LocksBusy):
            result = {"keys": list(event.keys), "holders": dict(event.holders)}
    elif before.locks != after.locks and isinstance(event, LocksBusy):
        outcome = "waiting"
        result = {"keys": list(event.keys), "holders": dict(event.holders)}
    else:
        return None
    return lock_line(
        inst.state.saga_id,
        step,
        outcome,
        since=since,
        now=now,
        result=result,
        error=error,
    )


def saving(
    driver: Driver,
    inst: Instance,
    record: SagaRecord,
    history: list[HistoryEntry],
    extra: dict[str, Any],
) -> tuple[Any, list[HistoryEntry], LockChange | None]:
    """How ``Driver.commit`` saves ``record`` over ``inst.state``: through
    the store itself when the locks change (their own transaction, never a
    group commit; ``extra`` gets the change), with the history lines of the
    keys released; and the change (None: none)."""
    change, released = changed(inst.state, record.state, record.updated_at)
    if change is None:
        return driver.saves, history, None
    extra["locks"] = change
    return driver.store, [*history, *released], change


def changed(
    before: SagaState, after: SagaState, now: float
) -> tuple[LockChange | None, list[HistoryEntry]]:
    """What committing ``after`` over ``before`` does to the locks, and the
    history lines of the keys it releases (by the step that took them)."""
    change = lock_change(before, after)
    if change is None or not change.release:
        return change, []
    held = {} if before.locks is None else before.locks.held
    by_step: dict[str, list[str]] = {}
    for key in change.release:
        by_step.setdefault(held[key].step, []).append(key)
    lines = [
        lock_line(
            before.saga_id, step, "released", since=now, now=now, result={"keys": keys}
        )
        for step, keys in by_step.items()
    ]
    return change, lines
