"""Waking the instances a driver drives that queue for semantic locks.

A :class:`LockWatch` runs while any instance driven here waits for locks
(see :mod:`sagakit.runtime.locking`). It puts ``LocksFreed`` on the queue of
each whose keys the store says are free for it (``SagaLocks.locks_ready``),
and of each that has not asked yet, and ``DeadlinePassed`` on the queue of
each whose lock timeout passed; the instance's own task applies them. It
looks at once when keys were released here (:meth:`LockWatch.poke`), or in
another process when the store says so (``LockReleases``: PostgreSQL's
``LISTEN``), else after ``FIRST_POLL`` seconds, doubling up to
``Driver.lock_poll``: keys released by another process are seen within that
on any store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import TYPE_CHECKING, Any

from sagakit.engine import locks
from sagakit.engine.events import DeadlinePassed, LocksFreed
from sagakit.engine.state import SagaState, SagaStatus
from sagakit.errors import SagaError, StoreError
from sagakit.ports.locks import LockChange, LockReleases, StopListening
from sagakit.ports.store import HistoryEntry
from sagakit.runtime.instance import Delivery, Instance
from sagakit.runtime.locking import lock_line

if TYPE_CHECKING:
    from sagakit.runtime.driver import Driver

logger = logging.getLogger("sagakit.runtime.orchestrator")

FIRST_POLL = 0.02
"""Seconds before the first look at the store for freed keys (then doubling
up to ``Driver.lock_poll``)."""


class LockWatch:
    """Wakes the instances of ``driver`` that queue for locks (see the
    module). Runs while any does."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self._task: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        self._listened = False  # this run has tried to listen (once queued)
        self._stop: StopListening | None = None
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
        if change.release or change.unwait or (change.wait and not self._listened):
            self.poke()  # (joined a queue: listen, then look)
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
        while True:
            self._listened = False
            try:
                await self._watch()
            finally:
                stop, self._stop = self._stop, None
                if stop is not None:
                    await stop()
            # one that queued while the listening stopped found this task
            # still running (start did nothing): watch it too
            if not self._waiting():
                return

    async def _listen(self) -> StopListening | None:
        """Have the store poke this watch when another process lets go of
        keys, if it can (else polling alone serves)."""
        store = self.driver.store
        if not isinstance(store, LockReleases):
            return None
        try:
            return await store.listen_lock_releases(self.poke)
        except StoreError as exc:
            logger.warning(
                "not listening for lock releases; polling",
                extra={"action": "lock_listen_failed", "error": str(exc)},
            )
            return None

    async def _watch(self) -> None:
        """Look, then pause, while any instance waits. It is started for
        every instance that may take locks, so it listens (a connection of
        its own on PostgreSQL) only once one queues in the store, and before
        it looks again: no release after that look goes unnoticed."""
        delay = FIRST_POLL
        while True:
            waiting = self._waiting()
            if not waiting:
                return
            if not self._listened and any(w.keys for i in waiting for w in _waits(i)):
                self._listened = True
                self._stop = await self._listen()
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
