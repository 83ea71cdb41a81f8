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
of any group commit. A :class:`LockWatch` per driver wakes the instances it
drives that queue for locks (``LocksFreed``) once the store says their keys
are free for them: at once after a release committed here, else every
``Driver.lock_poll`` seconds at most; it also fails the waits whose lock
timeout passed (``DeadlinePassed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sagakit.engine import locks
from sagakit.engine.commands import AcquireLocks, Command, Decision
from sagakit.engine.decide import decide
from sagakit.engine.events import (
    DeadlinePassed,
    Event,
    LockKeyFailed,
    LocksAcquired,
    LocksBusy,
    LocksFreed,
)
from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus
from sagakit.errors import LockUnavailable, SagaError, StoreError
from sagakit.ports.locks import LockChange, lock_change
from sagakit.ports.store import HistoryEntry, InboxEntry, SagaRecord
from sagakit.runtime.instance import Delivery, Instance

if TYPE_CHECKING:
    from sagakit.runtime.driver import Driver

logger = logging.getLogger("sagakit.runtime.orchestrator")

FIRST_POLL = 0.02
"""Seconds before the first look at the store for freed keys (then doubling
up to ``Driver.lock_poll``)."""


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


class LockWatch:
    """Wakes the instances of ``driver`` that queue for locks (see the
    module). Runs while any does."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self._task: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        # the instances with a wake-up on their queue, not applied yet
        self._woken: weakref.WeakSet[Instance] = weakref.WeakSet()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
            self.driver.tasks.add(self._task)
            self._task.add_done_callback(self.driver.tasks.discard)

    def poke(self) -> None:
        """Keys were released here: look at once."""
        self._poke.set()

    def notice(self, change: LockChange, state: SagaState) -> None:
        """A commit here made ``change``, leaving its instance in ``state``:
        keys it let go may wake others; a queue it joined needs watching."""
        if change.release or change.unwait:
            self.poke()
        if state.locks is not None and state.locks.waits:
            self.start()

    def _waiting(self) -> list[Instance]:
        return [
            inst
            for inst in self.driver.active.values()
            if inst.state.locks is not None
            and inst.state.locks.waits
            and inst.state.status is SagaStatus.RUNNING
            and not inst.state.paused
        ]

    async def _run(self) -> None:
        delay = FIRST_POLL
        while True:
            waiting = self._waiting()
            if not waiting:
                return
            try:
                woke = await self._look(waiting)
            except (StoreError, SagaError) as exc:
                logger.warning(
                    "lock check failed",
                    extra={"action": "lock_check_retry", "error": str(exc)},
                )
                woke = False
            delay = FIRST_POLL if woke else min(delay * 2, self.driver.lock_poll)
            due = [locks.next_deadline(i.state) for i in waiting]
            now = self.driver.clock.now()
            pause = min([delay, *(d - now for d in due if d is not None)])
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(pause, 0.0)):
                    await self._poke.wait()
            if self._poke.is_set():
                delay = FIRST_POLL

    async def _look(self, waiting: list[Instance]) -> bool:
        """Wake what may go on; True if something was woken."""
        now = self.driver.clock.now()
        woke = False
        queued = []
        for inst in waiting:
            saga_id = inst.state.saga_id
            if inst in self._woken:
                continue
            deadline = locks.next_deadline(inst.state)
            if deadline is not None and deadline <= now:
                self._wake(inst, DeadlinePassed(now, self.driver.jitter()), now)
                woke = True
            elif any(not w.keys for w in _waits(inst)):
                self._wake(inst, LocksFreed(now), now)
                woke = True
            else:
                queued.append(saga_id)
        if queued:
            for saga_id in await self.driver.store.locks_ready(queued):
                ready = self.driver.active.get(saga_id)
                if ready is not None and ready not in self._woken:
                    self._wake(ready, LocksFreed(now), now)
                    woke = True
        return woke

    def _wake(
        self, inst: Instance, event: DeadlinePassed | LocksFreed, now: float
    ) -> None:
        """Put ``event`` on ``inst``'s queue (once until it is applied)."""
        self._woken.add(inst)
        lines = _timed_out(inst.state, now) if isinstance(event, DeadlinePassed) else []
        handled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        inst.queue.put_nowait(Delivery(event, lines, None, handled))

        def applied(done: asyncio.Future[None]) -> None:
            self._woken.discard(inst)
            if not done.cancelled() and done.exception() is not None:
                logger.info(
                    "lock wake-up not applied",
                    extra={
                        "action": "lock_wake_refused",
                        "saga_id": inst.state.saga_id,
                        "error": str(done.exception()),
                    },
                )

        handled.add_done_callback(applied)


def _waits(inst: Instance) -> list[Any]:
    return [] if inst.state.locks is None else list(inst.state.locks.waits.values())


def _timed_out(state: SagaState, now: float) -> list[HistoryEntry]:
    """The history lines of the lock waits of ``state`` that timed out."""
    waits = {} if state.locks is None else state.locks.waits
    return [
        lock_line(
            state.saga_id,
            step,
            "timed_out",
            since=waits[step].since,
            now=now,
            error=error,
        )
        for step, error in locks.expired(state, now)
    ]
