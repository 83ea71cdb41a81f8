"""The notifier: finds what hooks must hear about, and tells them.

**Durability.** A saga that ends ``failed`` or ``compensation_failed`` gets
its notification row in the very transaction that ends it (a trigger on the
saga table, or the in-memory store's ledger), whoever ended it: a worker,
an operator's action, another release. So a crash between the transition
and the delivery loses nothing: the row waits, and any notifier on the
database (this process after a restart, or another) delivers it. Stuck
sagas and lock waits are states, not transitions: a notifier finds them by
looking (every ``sweep_interval`` seconds), under event ids that make the
same finding add nothing, as long as it is kept.

**Delivery** is at least once: a notification is claimed with a hold (so
two notifiers do not send it together), sent to every hook that does not
have it yet, and marked delivered; a failure is tried again with backoff,
and dropped (logged) once the attempts ran out. A process killed after a
hook took it but before the mark sends it again when the hold expires:
receivers drop copies by event id. A delivered notification is kept (so the
event is sent once) until ``Hooks.keep`` after it happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping

from sagakit.errors import HookError, SagaError, SagaNotFound, StoreError
from sagakit.hooks.config import Hooks
from sagakit.hooks.event import (
    EventKind,
    hook_event,
    lock_notification,
    stuck_notification,
    stuck_reason,
)
from sagakit.hooks.lockwaits import StoreLockWaits
from sagakit.observability.observer import Observer
from sagakit.ports.clock import Clock, SystemClock
from sagakit.ports.notification_store import (
    LockWaits,
    Notification,
    NotificationSource,
    NotificationStore,
)
from sagakit.ports.store import SagaRecord, SagaStore

logger = logging.getLogger(__name__)

ENDED_BADLY = frozenset({"failed", "compensation_failed"})
SWEEP_PAGE = 200
SWEEP_MAX = 2_000
"""Unattended sagas looked at per sweep at most (the next sweep goes on)."""
PRUNE_INTERVAL = 3_600.0
LOCK = EventKind.LOCK_WAITING


class _WakeOnBadEnding(Observer):
    """Wakes the notifier when a saga driven in this process ends badly, so
    its notification goes out at once rather than at the next look."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def saga_finished(
        self,
        saga: str,
        saga_id: str,
        status: str,
        failed_step: str | None,
        trace: Mapping[str, str] | None,
    ) -> None:
        if status in ENDED_BADLY:
            self._wake()


def notifications_of(store: SagaStore) -> NotificationStore:
    if isinstance(store, NotificationSource):
        return store.notification_store()
    raise SagaError(
        f"{type(store).__name__} keeps no notifications: pass notifications=..."
    )


class Notifier:
    """Tells ``hooks`` about the sagas of ``store`` (of ``saga_names`` only,
    if given) that ended badly, got stuck, or wait on a lock (from
    ``lock_waits``; by default the store's own semantic locks, read by
    :class:`~sagakit.hooks.lockwaits.StoreLockWaits`).

    Run it with ``async with notifier.running():`` (or ``await
    notifier.run()`` in a task): due notifications are claimed every
    ``interval`` seconds, at once when :meth:`wake` is called (its
    :attr:`observer` does that when a saga driven in this process ends
    badly: pass it to the orchestrator), and stuck sagas are looked for
    every ``sweep_interval`` seconds. ``Worker(..., hooks=...)`` runs one.
    A claimed notification is held for ``hold`` seconds (by default long
    enough for every hook to time out): another notifier takes it only after
    that, if this one died meanwhile.
    """

    def __init__(
        self,
        store: SagaStore,
        hooks: Hooks,
        *,
        saga_names: Collection[str] | None = None,
        lock_waits: LockWaits | None = None,
        notifications: NotificationStore | None = None,
        worker_id: str | None = None,
        interval: float = 1.0,
        sweep_interval: float = 15.0,
        batch: int = 50,
        hold: float | None = None,
        clock: Clock | None = None,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        if not interval > 0 or not sweep_interval > 0 or batch < 1:
            raise SagaError(
                "interval and sweep_interval must be > 0 and batch >= 1, got "
                f"{interval}, {sweep_interval}, {batch}"
            )
        self.store = store
        self.hooks = hooks
        self.notes = notifications or notifications_of(store)
        self.saga_names = None if saga_names is None else frozenset(saga_names)
        self.clock: Clock = clock or SystemClock()
        if lock_waits is None:
            lock_waits = StoreLockWaits(store, clock=self.clock)
        self.lock_waits = lock_waits
        self.worker_id = worker_id or (
            f"notifier:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self.interval = interval
        self.sweep_interval = sweep_interval
        self.batch = batch
        self.jitter = jitter or random.random
        self.hold = hold or hooks.timeout * (len(hooks.targets) + 1) + 1.0
        self.observer: Observer = _WakeOnBadEnding(self.wake)
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._wake = asyncio.Event()
        self._next_sweep = 0.0  # time.monotonic()
        self._next_prune = 0.0
        self._sweep_after: str | None = None

    def wake(self) -> None:
        """Look for due notifications now rather than at the next interval."""
        self._wake.set()

    # -- one pass ---------------------------------------------------------------

    async def run_once(self) -> int:
        """Look for stuck sagas and lock waits (when a sweep is due), forget
        what is older than ``Hooks.keep`` (hourly), and deliver every due
        notification; returns how many were tried."""
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_interval
            await self.sweep()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_INTERVAL
            await self.notes.prune_notifications(self.clock.now() - self.hooks.keep)
        return await self.deliver_due()

    async def sweep(self) -> int:
        """Add notifications for stuck sagas and long lock waits found now;
        returns how many were new."""
        found: list[Notification] = []
        if self.hooks.wants(EventKind.SAGA_STUCK):
            found += await self._stuck()
        limit = self.hooks.lock_wait_after
        locks = self.lock_waits
        if locks is not None and limit is not None and self.hooks.wants(LOCK):
            now = self.clock.now()
            waits = await locks.lock_waits(longer_than=limit)
            found += [lock_notification(w, now) for w in waits]
        return await self.notes.add_notifications(found) if found else 0

    async def _stuck(self) -> list[Notification]:
        """Unattended sagas past their threshold, a page at a time from where
        the last sweep stopped (at most ``SWEEP_MAX`` per sweep)."""
        hooks = self.hooks
        limits = {"paused": hooks.paused_after}
        for reason in ("waiting", "unclaimed", "orphaned"):
            limits[reason] = hooks.stuck_after
        shortest = min(v for v in limits.values() if v is not None)
        now = self.clock.now()
        found: list[Notification] = []
        for _ in range(SWEEP_MAX // SWEEP_PAGE):
            page = await self.notes.unattended(
                unchanged_since=now - shortest,
                saga_names=self.saga_names,
                limit=SWEEP_PAGE,
                after=self._sweep_after,
            )
            self._sweep_after = page[-1].record.saga_id if page else None
            for saga in page:
                threshold = limits[stuck_reason(saga)[0]]
                if threshold is not None and saga.record.updated_at < now - threshold:
                    found.append(stuck_notification(saga, now))
            if len(page) < SWEEP_PAGE:
                self._sweep_after = None  # from the first again next time
                break
        return found

    async def deliver_due(self) -> int:
        """Claim and deliver due notifications until none is left."""
        tried = 0
        while True:
            claimed = await self.notes.claim_notifications(
                self.worker_id,
                hold=self.hold,
                limit=self.batch,
                saga_names=self.saga_names,
            )
            outcomes = await asyncio.gather(
                *(self._deliver(n) for n in claimed), return_exceptions=True
            )
            failure = None
            for note, outcome in zip(claimed, outcomes, strict=True):
                if isinstance(outcome, StoreError):
                    failure = outcome  # left held: tried again when it expires
                elif isinstance(outcome, Exception):
                    logger.error(
                        "hook delivery crashed; tried again after its hold",
                        exc_info=outcome,
                        extra=self._extra(note, "hook_crashed"),
                    )
                elif isinstance(outcome, BaseException):
                    raise outcome
            if failure is not None:
                raise failure
            tried += len(claimed)
            if len(claimed) < self.batch:
                return tried

    # -- one notification ------------------------------------------------------

    async def _deliver(self, note: Notification) -> None:
        why_not = self._refusal(note)
        if why_not is not None:
            await self._drop(note, why_not, quietly=True)
            return
        event = hook_event(
            note, await self._record(note.saga_id), self.hooks.dashboard_url
        )
        done = set(note.delivered_to)
        errors = []
        for name, target in self.hooks.targets.items():
            if name in done:
                continue
            try:
                async with asyncio.timeout(self.hooks.timeout + 1.0):
                    await target(event)
            except TimeoutError:
                errors.append(f"{name}: no answer within {self.hooks.timeout:g} s")
            except HookError as exc:
                errors.append(str(exc))
            else:
                done.add(name)
        if not errors:
            await self.notes.notification_delivered(note.event_id, done)
            self.delivered += 1
            logger.info("hook notified", extra=self._extra(note, "hook_delivered"))
            return
        error = "; ".join(errors)
        retry_in = self.hooks.retry.delay(note.attempts + 1, self.jitter())
        if retry_in is None:
            await self.notes.notification_failed(
                note.event_id, delivered_to=done, error=error, retry_in=None
            )
            self._dropped(note, f"no attempts left: {error}")
            return
        await self.notes.notification_failed(
            note.event_id, delivered_to=done, error=error, retry_in=retry_in
        )
        self.failed += 1
        logger.warning(
            "hook failed; retrying",
            extra=self._extra(note, "hook_retry") | {"error": error, "in": retry_in},
        )

    def _refusal(self, note: Notification) -> str | None:
        """Why ``note`` is dropped unsent, if it is."""
        try:
            kind = EventKind(note.kind)
        except ValueError:
            return f"unknown event type {note.kind!r} (written by a newer sagakit?)"
        if not self.hooks.wants(kind):
            return f"these hooks take no {kind.value} events"
        age = self.clock.now() - note.occurred_at
        if note.attempts == 0 and age > self.hooks.max_age:
            return f"{age:.0f} s old when first seen (max_age {self.hooks.max_age:g} s)"
        return None

    async def _drop(self, note: Notification, why: str, *, quietly: bool) -> None:
        await self.notes.notification_failed(
            note.event_id, delivered_to=note.delivered_to, error=why, retry_in=None
        )
        self._dropped(note, why, quietly=quietly)

    def _dropped(self, note: Notification, why: str, *, quietly: bool = False) -> None:
        self.dropped += 1
        log = logger.info if quietly else logger.error
        log(
            "hook notification dropped",
            extra=self._extra(note, "hook_dropped") | {"why": why},
        )

    async def _record(self, saga_id: str | None) -> SagaRecord | None:
        if saga_id is None:
            return None
        try:
            return await self.store.get(saga_id)
        except SagaNotFound:
            return None

    @staticmethod
    def _extra(note: Notification, action: str) -> dict[str, object]:
        return {
            "action": action,
            "event_id": note.event_id,
            "event": note.kind,
            "saga_id": note.saga_id,
            "attempt": note.attempts + 1,
        }

    # -- running ---------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until cancelled; store errors are retried with backoff."""
        delay = self.interval
        while True:
            self._wake.clear()
            try:
                await self.run_once()
                delay = self.interval
            except StoreError as exc:
                logger.warning(
                    "notifier failed; retrying",
                    extra={"action": "notifier_retry", "error": str(exc)},
                )
                delay = min(delay * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Notifier]:
        """Run :meth:`run` in a task for the block."""
        task = asyncio.create_task(
            self.run(), name=f"sagakit notifier {self.worker_id}"
        )
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["Notifier", "notifications_of"]
