"""The message side of the orchestrator: replies, deadlines and serving.

Mixed into :class:`~sagakit.runtime.orchestrator.Orchestrator`; split out to
keep each module readable. Replies and deadlines become deliveries on an
instance's queue; its driver applies them like any other outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Self

from sagakit.definition.saga import Saga
from sagakit.engine.commands import Command, Compensate, FinishSaga, RunStep
from sagakit.engine.events import (
    CompensationAttemptFailed,
    DeadlinePassed,
    Event,
    StepAttemptFailed,
)
from sagakit.errors import (
    ConcurrencyError,
    DuplicateMessage,
    SagaError,
    SagaNotFound,
    StateError,
    StoreError,
)
from sagakit.messaging.envelope import Envelope, MalformedMessage
from sagakit.observability.observer import Observer
from sagakit.ports.clock import Clock
from sagakit.ports.store import HistoryEntry, InboxEntry, SagaRecord, SagaStore
from sagakit.ports.transport import Subscription, Transport
from sagakit.runtime.executor import error_info
from sagakit.runtime.instance import REPLY_CONSUMER, Delivery, Instance, Outcome
from sagakit.runtime.relay import OutboxRelay
from sagakit.runtime.remote import reply_event, timed_out_entries

logger = logging.getLogger("sagakit.runtime.orchestrator")

MAX_RELOADS = 3
"""Times a reply is applied again after reloading a saga another worker moved."""


class MessagingMixin:
    """Needs the attributes and methods declared below from the orchestrator."""

    store: SagaStore
    clock: Clock
    transport: Transport | None
    relay: OutboxRelay | None
    reply_queue: str
    lease: float | None
    deadline_interval: float
    store_retry: float
    observer: Observer
    _serving: bool
    _active: dict[str, Instance]
    _sagas: dict[str, Saga[Any]]
    _jitter: Callable[[], float]

    if TYPE_CHECKING:

        def definition(self, name: str) -> Saga[Any]: ...

        def _spawn(self, inst: Instance, commands: tuple[Command, ...]) -> None: ...

        async def _apply(
            self,
            inst: Instance,
            event: Event,
            entries: list[HistoryEntry],
            inbox: InboxEntry | None = None,
        ) -> tuple[Command, ...]: ...

    def _unsendable(
        self,
        inst: Instance,
        command: RunStep | Compensate,
        exc: Exception,
        now: float,
    ) -> Outcome:
        info = error_info(exc)
        kind = "action" if isinstance(command, RunStep) else "compensation"
        entry = HistoryEntry(
            inst.state.saga_id,
            command.step,
            kind,
            command.attempt,
            "failed",
            now,
            now,
            error=info,
        )
        if isinstance(command, RunStep):
            event: Event = StepAttemptFailed(
                command.step, info, False, now, 0.0, command.attempt
            )
        else:
            event = CompensationAttemptFailed(
                command.step, info, False, now, 0.0, command.attempt
            )
        return event, entry, exc

    async def _deliver(self, inst: Instance, item: Delivery) -> tuple[Command, ...]:
        """Apply a reply or a deadline; a late or duplicate one changes nothing.

        If another worker moved the saga on meanwhile (a reply of a parallel
        step, or one that the broker gave to that worker), the instance is
        reloaded from the store and the reply applied to the fresh state:
        the saga is not dropped here and the reply not sent back to the queue.
        """
        for _ in range(MAX_RELOADS):
            outcome = await self._deliver_once(inst, item)
            if outcome is not None:
                return outcome
        conflict = ConcurrencyError(
            f"saga {inst.state.saga_id} kept moving on in another worker; "
            "its reply goes back to the queue"
        )
        if not item.handled.done():
            item.handled.set_exception(conflict)
        raise conflict

    async def _deliver_once(
        self, inst: Instance, item: Delivery
    ) -> tuple[Command, ...] | None:
        """What ``_apply`` decided; None if the saga was reloaded (apply again)."""
        try:
            commands = await self._apply(inst, item.event, item.entries, item.inbox)
        except DuplicateMessage:
            logger.info(
                "duplicate reply dropped",
                extra={"action": "reply_duplicate", "saga_id": inst.state.saga_id},
            )
            commands = ()
            # applied by another worker, maybe: then this copy is behind
            record = await self._stored(inst)
            stale = record is not None and record.version != inst.version
            if record is not None and stale and self._reload(inst, record):
                commands = self._caught_up(inst, item, record)
        except (StateError, ConcurrencyError, SagaNotFound) as exc:
            record = None
            if item.inbox is not None:
                try:
                    record = await self._stored(inst)
                except StoreError:
                    if not isinstance(exc, ConcurrencyError):
                        raise
            stale = record is not None and record.version != inst.version
            moved = isinstance(exc, ConcurrencyError) or stale
            if (
                moved
                and record is not None
                and not item.strict
                and self._reload(inst, record)
            ):
                if not record.status.terminal:
                    return None
                return self._caught_up(inst, item, record)
            if isinstance(exc, ConcurrencyError):
                if not item.handled.done():
                    item.handled.set_exception(exc)
                raise
            if item.strict:
                if not item.handled.done():
                    item.handled.set_exception(exc)
                return ()
            if stale:
                # another worker moved the saga on (a reply it applied took the
                # lease): this reply may be for a step only it knows of, so it
                # must not be dropped here; the transport delivers it again
                conflict = ConcurrencyError(
                    f"saga {inst.state.saga_id}: version {inst.version} is "
                    f"stale; a reply for it goes back to the queue ({exc})"
                )
                if not item.handled.done():
                    item.handled.set_exception(conflict)
                raise conflict from exc
            logger.info(
                "late reply dropped",
                extra={
                    "action": "reply_stale",
                    "saga_id": inst.state.saga_id,
                    "reason": str(exc),
                },
            )
            commands = ()
        except BaseException as exc:
            if not item.handled.done():
                item.handled.set_exception(exc)
            raise
        if not item.handled.done():
            item.handled.set_result(None)
        return commands

    @staticmethod
    def _caught_up(
        inst: Instance, item: Delivery, record: SagaRecord
    ) -> tuple[Command, ...]:
        """After a reload: nothing to do, or the end of a saga another worker
        finished (this copy reports nothing)."""
        if not record.status.terminal:
            return ()
        inst.finished_elsewhere = True
        if not item.handled.done():
            item.handled.set_result(None)
        return (FinishSaga(record.status),)

    def _reload(self, inst: Instance, record: SagaRecord) -> bool:
        """Replace ``inst``'s state with ``record`` (the store's) if no local
        step runs for it here; False if it cannot be. History lines not
        written yet (a ``claimed`` line) stay pending: they go with the next
        commit."""
        if inst.in_flight or inst.tasks:
            return False
        logger.info(
            "saga moved on in another worker; reloaded",
            extra={
                "action": "saga_reloaded",
                "saga_id": inst.state.saga_id,
                "version": record.version,
            },
        )
        inst.state = record.state
        inst.version = record.version
        inst.context = inst.saga.context.model_validate(record.context)
        return True

    async def _stored(self, inst: Instance) -> SagaRecord | None:
        """The saga of ``inst`` as the store has it (None: it is gone)."""
        try:
            return await self.store.get(inst.state.saga_id)
        except SagaNotFound:
            return None

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Self]:
        """Run the outbox relay, the reply consumer and the deadline timer."""
        if self.transport is None or self.relay is None:
            raise SagaError("serving() needs an orchestrator with a transport")
        if self._serving:
            raise SagaError("this orchestrator is already serving")
        if self.lease is None:
            # embedded: this process owns the database, so holds left by a
            # previous run (a crash between a commit and its publish) are
            # stale; without this they would wait out the hold
            await self.store.release_outbox()
        subscription: Subscription = await self.transport.consume(
            self.reply_queue, self.handle_reply
        )
        loops = [
            asyncio.create_task(self.relay.run()),
            asyncio.create_task(self._deadline_loop()),
        ]
        self._serving = True
        try:
            yield self
        finally:
            self._serving = False
            await subscription.cancel()
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def handle_reply(self, message: Envelope) -> None:
        """Apply a participant's reply (the reply queue's consumer callback).

        Returns once the reply is committed (or found late or duplicate), so the
        transport acknowledges only what is durable.
        """
        if message.kind != "reply":
            raise MalformedMessage(f"the reply queue got a {message.kind}, not a reply")
        if not message.saga_id:
            raise MalformedMessage(f"reply {message.id} names no saga id")
        inst = self._active.get(message.saga_id)
        if inst is None:
            inst = await self._load_for_delivery(message.saga_id)
            if inst is None:
                return  # the saga ended: a late reply
        translated = reply_event(
            inst.saga, message, now=self.clock.now(), jitter=self._jitter()
        )
        inbox = InboxEntry(REPLY_CONSUMER, message.id)
        with self.observer.reply_received(inst.saga.name, message):
            await self._enqueue(inst, translated.event, [translated.entry], inbox)

    async def _enqueue(
        self,
        inst: Instance,
        event: Event,
        entries: list[HistoryEntry],
        inbox: InboxEntry | None,
        *,
        strict: bool = False,
        wait: bool = True,
    ) -> None:
        handled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        inst.queue.put_nowait(Delivery(event, entries, inbox, handled, strict))
        if not wait:
            handled.add_done_callback(_consume_result)
            return
        driver = inst.driver
        if driver is None or driver.done():
            return  # nothing will apply it here; the store still has the truth
        waiter = asyncio.ensure_future(asyncio.shield(handled))
        done, _ = await asyncio.wait({waiter, driver}, return_when="FIRST_COMPLETED")
        if waiter in done:
            waiter.result()
        else:
            waiter.cancel()
            if not handled.done():
                raise SagaError(
                    f"saga {inst.state.saga_id} stopped before a delivery was applied"
                )

    async def _load_for_delivery(self, saga_id: str) -> Instance | None:
        """Adopt an instance that is not driven here so a reply can be applied."""
        delay, waited = 0.05, 0.0
        while True:  # a reply must not fail (and be dead-lettered) in an outage
            try:
                record = await self.store.get(saga_id)
                break
            except SagaNotFound:
                raise MalformedMessage(f"reply for unknown saga {saga_id}") from None
            except StoreError:
                if waited >= self.store_retry:
                    raise
                await self.clock.sleep(delay)
                waited += delay
                delay = min(delay * 2, 2.0)
        if record.status.terminal:
            logger.info(
                "reply for a finished saga dropped",
                extra={"action": "reply_late", "saga_id": saga_id},
            )
            return None
        if saga_id in self._active:  # adopted meanwhile
            return self._active[saga_id]
        saga = self.definition(record.saga_name)
        inst = Instance(
            saga,
            record.state,
            saga.context.model_validate(record.context),
            record.version,
            record.created_at,
            record.idempotency_key,
        )
        self._active[saga_id] = inst
        self._spawn(inst, ())
        return inst

    async def _deadline_loop(self) -> None:
        names = list(self._sagas)
        while True:
            await asyncio.sleep(self.deadline_interval)
            try:
                due = await self.store.due_deadlines(names or list(self._sagas))
                for saga_id in due:
                    await self.fire_deadline(saga_id)
            except (StoreError, SagaError) as exc:
                logger.warning(
                    "deadline check failed",
                    extra={"action": "deadline_retry", "error": str(exc)},
                )

    async def fire_deadline(self, saga_id: str) -> None:
        """Fail the remote steps of ``saga_id`` whose reply deadline passed."""
        inst = self._active.get(saga_id)
        if inst is None:
            try:
                inst = await self._load_for_delivery(saga_id)
            except MalformedMessage:
                return
            if inst is None:
                return
        now = self.clock.now()
        entries = timed_out_entries(inst.saga, inst.state, now)
        if entries:
            await self._enqueue(
                inst, DeadlinePassed(now, self._jitter()), entries, None
            )


def _consume_result(done: asyncio.Future[None]) -> None:
    """Nobody awaits a fire-and-forget delivery: log what it raised."""
    if not done.cancelled() and done.exception() is not None:
        logger.warning(
            "operator action refused",
            extra={"action": "operator_refused", "error": str(done.exception())},
        )
