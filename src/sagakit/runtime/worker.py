"""A long-running worker: claims sagas from a shared store and drives them.

Run as many worker processes on one database as you like: each claims
instances whose lease is free or expired (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), renews its leases while it drives them, and hands them back on
a graceful stop or a drain. A worker that dies simply stops renewing; once
its leases expire (at once, for a dead process on the same host) another
worker claims its instances and resumes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from sagakit.definition.saga import Saga
from sagakit.errors import SagaError, StoreError
from sagakit.hooks.config import Hooks
from sagakit.hooks.notifier import Notifier
from sagakit.observability.observer import MultiObserver, Observer
from sagakit.ports.clock import Clock
from sagakit.ports.notification_store import LockWaits
from sagakit.ports.store import SagaStore
from sagakit.ports.transport import Transport
from sagakit.runtime.orchestrator import Orchestrator

logger = logging.getLogger(__name__)


class Worker:
    """Claims and drives instances of ``sagas`` until ``stop()``.

    ``lease``: seconds another worker waits before taking over the instances of
    a worker that stopped renewing; leases are renewed every ``lease / 3``.
    ``max_active`` bounds the instances driven at once (a parent that only
    waits for its sub-saga's child does not count: the child, which may be
    claimed after a crash, does the work): a worker at ``max_active``
    claims again as soon as one of its instances ends. ``poll_interval`` is
    the pause between claims when there was nothing to claim. ``observer``:
    tracing and metrics hooks (see ``Orchestrator``). ``store_retry``: how
    long a failing save is retried (see ``Orchestrator``), and how long
    ``run(until_idle=True)`` keeps claiming through a store outage before
    it gives up with a ``StoreError`` (at once when the store is read-only).
    ``reply_routing``: a reply queue of its own, and ``resend_after``: the
    command of a remote step whose reply is late sent again (see
    ``Orchestrator``).
    ``hooks``: who to tell when a saga of ``sagas`` ends badly, gets stuck
    or waits on a lock too long; a :class:`~sagakit.hooks.Notifier` delivers
    them while the worker runs (``lock_waits``: where it finds lock waits,
    by default the store's semantic locks).
    """

    def __init__(
        self,
        store: SagaStore,
        sagas: Iterable[Saga[Any]],
        *,
        worker_id: str | None = None,
        lease: float = 30.0,
        poll_interval: float = 0.2,
        max_active: int = 200,
        clock: Clock | None = None,
        transport: Transport | None = None,
        reply_queue: str = "sagakit.replies",
        observer: Observer | None = None,
        store_retry: float = 30.0,
        reply_routing: bool = True,
        max_crash_attempts: int | None = 3,
        resend_after: float | None = None,
        hooks: Hooks | None = None,
        lock_waits: LockWaits | None = None,
    ) -> None:
        if max_active < 1:
            raise SagaError(f"max_active must be >= 1, got {max_active}")
        sagas = list(sagas)
        self.notifier = None
        if hooks is not None:
            names = {one.name for saga in sagas for one in (saga, *saga.family)}
            self.notifier = Notifier(
                store, hooks, saga_names=names, lock_waits=lock_waits
            )
            wake = self.notifier.observer
            observer = wake if observer is None else MultiObserver(observer, wake)
        self.orchestrator = Orchestrator(
            store,
            sagas,
            worker_id=worker_id,
            lease=lease,
            clock=clock,
            transport=transport,
            reply_queue=reply_queue,
            observer=observer,
            store_retry=store_retry,
            reply_routing=reply_routing,
            max_crash_attempts=max_crash_attempts,
            resend_after=resend_after,
        )
        self.poll_interval = poll_interval
        self.max_active = max_active
        self._stop = asyncio.Event()
        self._drain = False
        self.claimed = 0

    @property
    def worker_id(self) -> str:
        return self.orchestrator.worker_id

    def stop(self) -> None:
        """Ask ``run`` to stop claiming, finish what it drives, and return.

        Cancelling ``run`` instead stops it at once: the sagas it drives are
        cancelled and keep their leases, so others claim them when those expire.
        """
        self._stop.set()
        self.orchestrator.driver.freed.set()  # wakes a pause in run()

    def drain(self) -> None:
        """Ask ``run`` to stop for a rolling restart: claim nothing more, let
        the steps in flight finish and commit, start no next step, release
        every saga driven here (another worker claims it at once), and return.
        ``sagakit worker`` does this on SIGTERM."""
        self._drain = True
        self.stop()

    async def run(
        self, *, until_idle: bool = False, drain_timeout: float = 30.0
    ) -> None:
        """Claim and drive until ``stop()`` (or, with ``until_idle``, until there
        is nothing left to claim or drive). With a transport, the outbox relay,
        the reply consumer and the deadline timer run alongside; with hooks,
        the notifier.

        With ``until_idle``, a store that keeps failing is an error: once
        claims have failed for ``store_retry`` seconds in a row (at once if
        it is read-only), or a saga stopped because its save was refused,
        the worker stops as it would when idle and raises ``StoreError``.
        Without it, the worker keeps claiming through any outage."""
        async with contextlib.AsyncExitStack() as stack:
            if self.notifier is not None:
                await stack.enter_async_context(self.notifier.running())
            if self.orchestrator.transport is not None:
                await stack.enter_async_context(self.orchestrator.serving())
            await self._run(until_idle, drain_timeout)

    async def _run(self, until_idle: bool, drain_timeout: float) -> None:
        orch = self.orchestrator
        logger.info(
            "worker started",
            extra={
                "action": "worker_started",
                "worker": self.worker_id,
                "lease": orch.lease,
            },
        )
        cancelled = False
        freed = orch.driver.freed
        outage = Outage(orch.clock, orch.store_retry)
        try:
            while not self._stop.is_set():
                freed.clear()  # before counting: a slot freed from now on wakes us
                busy = orch.active - orch.watching
                room = self.max_active - busy
                got, failed = 0, False
                if room > 0:
                    try:
                        got = len(await orch.recover(limit=room))
                        outage.over()
                    except StoreError as exc:
                        failed = True  # not idle: unknown what is left to claim
                        outage.failed(exc)
                        refused = orch.driver.store_failure
                        if not (until_idle and outage.give_up(refused)):
                            logger.warning(
                                "claim failed; retrying",
                                extra={"action": "claim_retry", "error": str(exc)},
                            )
                self.claimed += got
                if until_idle and outage.give_up(orch.driver.store_failure):
                    break
                idle = orch.active == orch.paused  # paused ones wait for an operator
                if until_idle and not failed and got == 0 and idle:
                    break
                if orch.active - orch.watching >= self.max_active:
                    await self._pause(freed, wake_on_free=True)  # claim once one ends
                elif got == 0:  # nothing to claim: look again in a poll interval
                    await self._pause(freed, wake_on_free=until_idle and not failed)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            await self._let_go(cancelled, drain_timeout)
        if outage.error is not None:
            raise outage.error

    async def _let_go(self, cancelled: bool, drain_timeout: float) -> None:
        """Stop driving: at once when cancelled; else drain (``drain()``),
        or let what runs end within ``drain_timeout``; release the rest."""
        orch = self.orchestrator
        if cancelled:
            # cancelled, not stopped: quit at once like a dead worker; the
            # instances stay leased until their leases run out
            await orch.stop_driving(release=False)
        elif self._drain:
            with contextlib.suppress(StoreError):
                await orch.stop(drain=True, drain_timeout=drain_timeout)
        else:
            try:
                async with asyncio.timeout(drain_timeout):
                    await orch.settle()
                # what is left only waits for replies: hand it over now
                with contextlib.suppress(StoreError):
                    await orch.stop_driving()
            except TimeoutError:
                logger.warning(
                    "stopping with sagas in flight; they stay resumable",
                    extra={
                        "action": "worker_drain_timeout",
                        "active": orch.active,
                    },
                )
                with contextlib.suppress(StoreError):
                    await orch.stop_driving()
        logger.info(
            "worker stopped",
            extra={
                "action": "worker_stopped",
                "worker": self.worker_id,
                "claimed": self.claimed,
            },
        )

    async def _pause(self, freed: asyncio.Event, *, wake_on_free: bool) -> None:
        """Wait ``poll_interval`` s, or less: until ``stop()``, or with
        ``wake_on_free`` until an instance driven here ends (``freed``, which
        ``stop()`` sets too). Frees seen without ``wake_on_free`` are let go
        by: nothing was claimable, so claiming again at each would only load
        the store."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval):
                while True:
                    await freed.wait()
                    if wake_on_free or self._stop.is_set():
                        return
                    freed.clear()


class Outage:
    """How long the store has failed a worker's claims in a row, and whether
    ``run(until_idle=True)`` gives up: ``error`` is then what it raises."""

    def __init__(self, clock: Clock, budget: float) -> None:
        self.clock = clock
        self.budget = budget
        self.since: float | None = None
        self.last: StoreError | None = None
        self.error: StoreError | None = None

    def over(self) -> None:
        self.since = self.last = None

    def failed(self, exc: StoreError) -> None:
        if self.since is None:
            self.since = self.clock.now()
        self.last = exc

    def give_up(self, refused_save: StoreError | None = None) -> bool:
        """True once claims failed past the budget (or against a read-only
        store), or a save was refused for good: ``error`` says which."""
        if self.error is not None:
            return True
        if refused_save is not None:
            self.error = StoreError(
                f"gave up: a saga stopped because the store refused its save "
                f"(it stays resumable): {refused_save}"
            )
            self.error.__cause__ = refused_save
        elif self.last is not None and self.since is not None:
            failing = self.clock.now() - self.since
            if self.last.read_only or failing >= self.budget:
                why = (
                    "the store refuses writes"
                    if self.last.read_only
                    else f"claims failed for {failing:.1f} s"
                )
                self.error = StoreError(f"gave up: {why}: {self.last}")
                self.error.__cause__ = self.last
        return self.error is not None
