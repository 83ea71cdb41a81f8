"""The orchestrator: starts, drives and recovers sagas in this process.

It composes a :class:`~sagakit.runtime.client.SagaClient` (creating
instances, results, the registry), a :class:`~sagakit.runtime.driver.Driver`
(running them: decide -> commit -> effects) and a
:class:`~sagakit.runtime.intake.ReplyIntake` (replies, deadlines, the outbox
relay). A successful saga of N sequential steps costs N + 1 commits. What a
recovery pass claims is in :class:`~sagakit.runtime.recovery.Takeover`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, ClassVar, Self, TypeVar, Unpack

from pydantic import BaseModel

from sagakit.definition.saga import Saga
from sagakit.definition.subsaga import has_remote_steps
from sagakit.errors import ConcurrencyError, SagaError, SagaNotFound, StateError
from sagakit.messaging.envelope import Envelope
from sagakit.observability.observer import NOOP, Observer
from sagakit.ports.clock import Clock
from sagakit.ports.store import SagaStore
from sagakit.ports.transport import Transport
from sagakit.runtime import subsaga
from sagakit.runtime.client import SagaClient, Started, StartOptions
from sagakit.runtime.clock import SystemClock
from sagakit.runtime.driver import Driver
from sagakit.runtime.instance import default_worker_id
from sagakit.runtime.intake import ReplyIntake
from sagakit.runtime.migrate import LeftWaiting, left_waiting
from sagakit.runtime.recovery import (
    RECOVERY_BATCH,
    Recovery,
    RecoveryProgress,
    Takeover,
)
from sagakit.runtime.registry import Registry
from sagakit.runtime.relay import OutboxRelay
from sagakit.runtime.result import SagaResult

C = TypeVar("C", bound=BaseModel)

DEFAULT_LEASE = 30.0
"""Seconds an instance stays leased to its orchestrator without a heartbeat."""


class Orchestrator:
    """Starts, drives and recovers orchestrated sagas against one store.

    ``sagas`` registers definitions so that ``recover`` can resume their
    instances after a restart; ``start``/``run`` register what they are given.

    Each instance this orchestrator creates or claims is leased to
    ``worker_id`` for ``lease`` seconds (30 by default), renewed every
    ``lease / 3`` s by a heartbeat that runs while anything is driven here.
    ``recover`` claims only instances whose owner is gone: its lease expired,
    or its process (on this host) died. So several processes may share one
    database, each calling ``recover`` at start-up; none takes a live peer's
    sagas. Within one process, an orchestrator made without ``lease`` (the
    embedded default) also takes what other orchestrators of the process
    leased, as ``recover`` always did: one process, one owner. Given a
    ``lease``, it waits for theirs to run out, as a ``Worker`` does.

    ``max_crash_attempts``: a local step found in flight by that many
    takeovers (its process died while running it, every time) parks its
    saga, paused with the reason in ``state.parked``, instead of running it
    again; an operator's ``unpause`` runs it again. None: never parked.

    ``store_retry`` is how long a save that failed with a store error (a lost
    connection, a database restart) is retried before the instance is left
    for another worker.

    Remote steps need a ``transport``: commands leave through the store's
    outbox (published by a relay), replies arrive on ``reply_queue``, and
    reply deadlines are checked every ``deadline_interval`` seconds; all three
    run inside ``async with orchestrator.serving():`` (``Worker`` does it).
    Where the transport can route replies (RabbitMQ and Celery on RabbitMQ)
    and ``reply_routing`` is on (the default), this orchestrator also has a
    reply queue of its own, and the replies to the commands it sends come
    there (see :mod:`sagakit.runtime.intake`). With ``resend_after``, the
    command of a remote step whose reply has not come that many seconds
    after it was issued is sent again (same message id: the participant's
    inbox deduplicates it), and again every ``resend_after`` seconds, until
    the reply comes or the step times out (:mod:`sagakit.runtime.resend`).

    ``group_commit`` (on by default, where the store supports it:
    PostgreSQL and SQLite) commits the transitions of different sagas that
    are ready at the same moment in one transaction and one round trip; each
    saga's transition is still durable before its effects run
    (:mod:`sagakit.runtime.group`).

    ``observer`` receives tracing and metrics hooks (``sagakit.observability``:
    ``OpenTelemetryObserver``, ``PrometheusObserver``); none by default.
    """

    driver_type: ClassVar[type[Driver]] = Driver
    """The driver class (a subclass may observe or adjust transitions)."""

    def __init__(
        self,
        store: SagaStore,
        sagas: Iterable[Saga[Any]] = (),
        *,
        clock: Clock | None = None,
        new_id: Callable[[], str] | None = None,
        jitter: Callable[[], float] | None = None,
        worker_id: str | None = None,
        lease: float | None = None,
        store_retry: float = 30.0,
        transport: Transport | None = None,
        reply_queue: str = "sagakit.replies",
        deadline_interval: float = 0.5,
        observer: Observer | None = None,
        group_commit: bool = True,
        reply_routing: bool = True,
        max_crash_attempts: int | None = 3,
        resend_after: float | None = None,
    ) -> None:
        if max_crash_attempts is not None and not (
            isinstance(max_crash_attempts, int) and max_crash_attempts >= 1
        ):
            raise SagaError(
                f"max_crash_attempts must be an int >= 1 or None, "
                f"got {max_crash_attempts!r}"
            )
        if lease is not None and not 0 < lease < math.inf:
            raise SagaError(
                f"lease must be a finite number > 0 of seconds, got {lease}"
            )
        if resend_after is not None and not 0 < resend_after < math.inf:
            raise SagaError(
                f"resend_after must be a finite number > 0 of seconds or None, "
                f"got {resend_after}"
            )
        if not 0 <= store_retry < math.inf:
            raise SagaError(
                f"store_retry must be a finite number >= 0, got {store_retry}"
            )
        self.store = store
        self.worker_id = worker_id or default_worker_id()
        self.embedded = lease is None
        self.lease: float = DEFAULT_LEASE if lease is None else lease
        self.clock: Clock = clock or SystemClock()
        self.transport = transport
        self.reply_queue = reply_queue
        self.observer: Observer = NOOP if observer is None else observer
        self.relay = (
            None
            if transport is None
            else OutboxRelay(store, transport, owner=self.worker_id)
        )
        self.registry = Registry(sagas)
        self.driver = self.driver_type(
            store,
            self.registry.definition_of,
            clock=self.clock,
            jitter=jitter or random.random,
            worker_id=self.worker_id,
            lease=self.lease,
            max_crashes=max_crash_attempts,
            store_retry=store_retry,
            reply_queue=reply_queue,
            relay=self.relay,
            observer=self.observer,
            group_commit=group_commit,
        )
        self.client = SagaClient(
            store, new_id=new_id, registry=self.registry, driver=self.driver
        )
        self.intake = ReplyIntake(
            self.driver,
            self.registry.names,
            transport=transport,
            relay=self.relay,
            reply_queue=reply_queue,
            deadline_interval=deadline_interval,
            reply_routing=reply_routing,
            resend_after=resend_after,
        )
        self._takeover = Takeover(self)

    @property
    def store_retry(self) -> float:
        return self.driver.store_retry

    @property
    def deadline_interval(self) -> float:
        return self.intake.deadline_interval

    # -- registry ----------------------------------------------------------

    def register(self, *sagas: Saga[Any]) -> None:
        self.registry.register(*sagas)

    def definition(self, name: str) -> Saga[Any]:
        return self.registry.definition(name)

    # -- starting ----------------------------------------------------------

    async def start(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None = None,
        **options: Unpack[StartOptions],
    ) -> str:
        """Start a saga in the background and return its id.

        With an ``idempotency_key`` already used for this saga, nothing new
        starts: the existing instance's id is returned.
        """
        started = await self._begin(saga, context, options)
        if started.instance is not None:
            self.driver.spawn(started.instance, started.commands)
        return started.saga_id

    async def run(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None = None,
        **options: Unpack[StartOptions],
    ) -> SagaResult[C]:
        """Start a saga and wait for it to end; returns its result (never raises
        for a failed step: see ``SagaResult.raise_for_status``)."""
        started = await self._begin(saga, context, options)
        inst = started.instance
        if inst is None:
            return await self.wait(started.saga_id)
        inst.done = asyncio.get_running_loop().create_future()
        inst.driver = asyncio.current_task()
        inst.caller_driven = True
        self.driver.own(inst)
        await self.driver.drive(inst, started.commands)
        try:
            return inst.done.result()
        except (ConcurrencyError, StateError, SagaNotFound):
            # another worker took the saga over: follow it in the store
            return await self._poll(started.saga_id)

    def run_sync(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None = None,
        **options: Unpack[StartOptions],
    ) -> SagaResult[C]:
        """``run`` for synchronous code (Flask, Django views, scripts)."""
        return asyncio.run(self.run(saga, context, **options))

    async def submit(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None = None,
        **options: Unpack[StartOptions],
    ) -> str:
        """Commit a new instance for a worker to run, and return its id.

        For producers (a web request handler) that must not run steps
        themselves; any ``Worker`` with the definition registered claims it.
        """
        return await self.client.submit(saga, context, **options)

    async def _begin(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None,
        options: StartOptions,
    ) -> Started:
        if self.driver.draining:
            raise SagaError("this orchestrator was stopped: it starts no saga")
        if has_remote_steps(saga) and not self.intake.running:
            raise SagaError(
                f"saga {saga.name!r} has remote steps (or its sub-sagas have): "
                "give the orchestrator a transport and run it inside "
                "'async with orchestrator.serving()'"
            )
        return await self.client.begin(saga, context, options, drive=True)

    # -- waiting -----------------------------------------------------------

    async def wait(self, saga_id: str) -> SagaResult[Any]:
        """Wait until the saga ends and return its result (bound it with
        ``asyncio.timeout`` if needed)."""
        inst = self.driver.active.get(saga_id)
        if inst is not None:
            if inst.done is None:
                inst.done = asyncio.get_running_loop().create_future()
            try:
                return await asyncio.shield(inst.done)
            except (ConcurrencyError, StateError, SagaNotFound):
                pass  # handed over or taken over: follow it in the store
        return await self._poll(saga_id)

    async def _poll(self, saga_id: str) -> SagaResult[Any]:
        active = self.driver.active
        record = await self.client.poll(saga_id, until=lambda: saga_id in active)
        if record is None:  # driven here meanwhile
            return await self.wait(saga_id)
        return self.client.result_of(record)

    async def result(self, saga_id: str) -> SagaResult[Any]:
        """The saga's current outcome as stored (it may not have ended)."""
        return await self.client.result(saga_id)

    async def drain(self) -> None:
        """Wait until every saga driven in the background has stopped (or, if
        paused, waits for an operator)."""
        await self.driver.drain()

    async def settle(self, poll: float = 0.02) -> None:
        """Wait until no step runs here: every instance driven here has ended
        or only waits for replies or deadlines (which survive a stop)."""
        await self.driver.settle(poll)

    async def stop_driving(self, *, release: bool = True) -> list[str]:
        """Cancel every saga driven here; they stay resumable, and with a lease
        they are released (unless ``release=False``) so another worker can claim
        them at once."""
        return await self.driver.stop(release=release)

    async def stop(
        self, *, drain: bool = True, drain_timeout: float | None = 30.0
    ) -> list[str]:
        """Stop this process's part (a rolling restart): recover, start and run
        take nothing new from now on. With ``drain``, the steps in flight
        finish and are committed (for up to ``drain_timeout`` s), and no next step
        starts; then every instance driven here is released, so another
        process claims it at once. Returns their ids.

        Not ``drain()``, which waits for the sagas driven in the background
        to end.
        """
        self.driver.draining = True
        if drain:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout):
                    await self.driver.settle()
        return await self.driver.stop(release=True)

    async def close(self) -> None:
        """Stop driving (unfinished sagas stay resumable) and close the store."""
        await self.stop_driving()
        await self.store.close()

    # -- recovery ----------------------------------------------------------

    async def recover(
        self,
        limit: int | None = None,
        *,
        batch: int = RECOVERY_BATCH,
        progress: Callable[[RecoveryProgress], object] | None = None,
    ) -> list[str]:
        """Resume the unfinished instances of the registered sagas in the
        background; returns their ids.

        Every one is taken, oldest first, ``batch`` at a time (one claim per
        batch, each after the last instance of the one before), until none
        is left or ``limit`` were taken: ``limit`` caps what this call takes
        (a ``Worker`` passes its free slots; None takes all, which a process
        must be able to drive at once: ``sagakit recover`` runs
        :meth:`recovery` batch by batch instead). ``progress`` is called
        after each batch.

        Only instances whose owner is gone are claimed: nobody owns them, their
        lease expired, or their owner's process on this host died (see the
        class). Steps that were committed are not run again; a step that was in
        flight when the previous owner died runs again (at-least-once).
        An instance started on a version not registered here (or whose shape
        changed) is never driven: it is migrated if a registered version
        declares an ``auto`` migration from it, else marked waiting with the
        reason (one warning per saga and version says how many and why;
        :meth:`waiting` counts all of them).
        """
        recovery = self.recovery(limit=limit, batch=batch)
        resumed: list[str] = []
        while not recovery.done:
            resumed += await recovery.next_batch()
            if progress is not None:
                progress(recovery.progress)
        return resumed

    def recovery(
        self, *, limit: int | None = None, batch: int = RECOVERY_BATCH
    ) -> Recovery:
        """A pass of :meth:`recover` that takes one batch per
        ``await recovery.next_batch()``, so that the caller decides when to
        take the next (after the last one ended, say)."""
        return self._takeover.recovery(limit=limit, batch=batch)

    async def unfinished(self) -> int:
        """How many instances of the registered sagas are unfinished in the
        store (driven here or not, waiting for a definition or for an
        operator): what a recovery stopped early leaves behind."""
        left = 0
        for name in self.registry.names():
            counts = await self.store.count_by_status(name)
            left += sum(n for status, n in counts.items() if not status.terminal)
        return left

    async def waiting(self) -> list[LeftWaiting]:
        """The unfinished instances of the registered sagas that this
        orchestrator leaves waiting (their version is not registered here,
        or changed shape), by saga and version, with why."""
        return left_waiting(self.registry, await self.store.live_definitions())

    async def renew_leases(self) -> list[str]:
        """Extend the leases of the instances this worker drives; returns the
        ids it lost (another worker claimed them: their next save fails)."""
        return await self.driver.renew_leases()

    async def retry(self, saga_id: str, *, by: str = "operator") -> None:
        """Run the failed steps of a ``failed`` saga again (fresh retry budget)."""
        await self.driver.request(saga_id, "retry", by=by)

    async def resume(self, saga_id: str, *, by: str = "operator") -> None:
        """Retry the failed compensation of a ``compensation_failed`` saga and
        go on rolling back."""
        await self.driver.request(saga_id, "resume", by=by)

    async def cancel(
        self, saga_id: str, *, reason: str | None = None, by: str = "operator"
    ) -> None:
        """Stop a running saga and compensate what it completed."""
        await self.driver.request(saga_id, "cancel", reason=reason, by=by)

    async def pause(
        self, saga_id: str, *, reason: str | None = None, by: str = "operator"
    ) -> None:
        """Start no new step of a running or compensating saga (steps in
        flight finish and are recorded) until :meth:`unpause`."""
        await self.driver.request(saga_id, "pause", reason=reason, by=by)

    async def unpause(
        self, saga_id: str, *, reason: str | None = None, by: str = "operator"
    ) -> None:
        """Let a paused saga go on where it stopped."""
        await self.driver.request(saga_id, "unpause", reason=reason, by=by)

    @property
    def active(self) -> int:
        """How many instances this orchestrator is driving now."""
        return len(self.driver.active)

    @property
    def watching(self) -> int:
        """How many of them only wait for the child of a sub-saga step."""
        return subsaga.watching(self.driver)

    @property
    def paused(self) -> int:
        """How many of them are paused and wait (parked) for an operator."""
        return self.driver.paused()

    # -- messaging ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Self]:
        """Run the outbox relay, the reply consumer and the deadline timer."""
        async with self.intake.serving():
            yield self

    async def handle_reply(self, message: Envelope) -> None:
        """Apply a participant's reply (the reply queue's consumer callback).

        Returns once the reply is committed (or found late or duplicate), so the
        transport acknowledges only what is durable.
        """
        await self.intake.handle_reply(message)

    async def fire_deadline(self, saga_id: str) -> None:
        """Fail the remote steps of ``saga_id`` whose reply deadline passed."""
        await self.intake.fire_deadline(saga_id)
