"""The reply intake: the outbox relay, the reply consumer and the deadline timer.

Replies and passed deadlines become deliveries on an instance's queue
(:func:`~sagakit.runtime.delivery.enqueue`); the instance's task
applies them like any other outcome.

On a transport that routes replies
(:class:`~sagakit.ports.transport.ReplyRouting`), the intake also consumes
a reply queue of this process's own, and the commands sent meanwhile name
its key: their replies come here, where their sagas are in memory. Replies
that reach another process (through the shared reply queue: its owner is
gone, or it took too long) are applied there as before; the store's
versions decide. When serving ends, what is left in the own queue goes to
the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import KW_ONLY, dataclass, field

from sagakit.engine.events import DeadlinePassed
from sagakit.errors import DefinitionUnavailable, SagaError, StoreError
from sagakit.messaging.envelope import Envelope, MalformedMessage
from sagakit.ports.store import InboxEntry
from sagakit.ports.transport import ReplyRouting, Subscription, Transport
from sagakit.runtime import adoption
from sagakit.runtime.delivery import enqueue
from sagakit.runtime.driver import Driver
from sagakit.runtime.instance import REPLY_CONSUMER
from sagakit.runtime.owners import reply_key
from sagakit.runtime.relay import OutboxRelay
from sagakit.runtime.remote import reply_event, timed_out_entries
from sagakit.runtime.resend import LateReplies
from sagakit.runtime.unawaited import ignored_reply

logger = logging.getLogger("sagakit.runtime.orchestrator")


@dataclass(eq=False)
class ReplyIntake:
    """Takes participants' replies on ``reply_queue`` and fails remote steps
    whose reply deadline passed (checked every ``deadline_interval`` s) for
    the sagas named by ``names()``; ``running`` while :meth:`serving`."""

    driver: Driver
    names: Callable[[], list[str]]
    _: KW_ONLY
    transport: Transport | None
    relay: OutboxRelay | None
    reply_queue: str
    deadline_interval: float
    reply_routing: bool = True
    """Consume a reply queue of this process's own where the transport can
    route replies (see the module)."""
    resend_after: float | None = None
    """Send again, every as many seconds, the command of a remote step whose
    reply has not come (see :mod:`~sagakit.runtime.resend`); None: never."""
    running: bool = field(default=False, init=False)
    late: LateReplies | None = field(default=None, init=False)

    @property
    def _routing(self) -> ReplyRouting | None:
        transport: object = self.transport  # any Transport may also route
        if self.reply_routing and isinstance(transport, ReplyRouting):
            return transport
        return None

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Run the outbox relay, the reply consumer(s) and the deadline timer."""
        if self.transport is None or self.relay is None:
            raise SagaError("serving() needs an orchestrator with a transport")
        if self.running:
            raise SagaError("this orchestrator is already serving")
        subscriptions: list[Subscription] = []
        routing, key = self._routing, reply_key(self.driver.worker_id)
        try:
            subscriptions.append(
                await self.transport.consume(self.reply_queue, self.handle_reply)
            )
            if routing is not None:
                subscriptions.append(
                    await routing.consume_own_replies(
                        self.reply_queue, key, self.handle_reply
                    )
                )
                self.driver.reply_key = key
        except BaseException:
            for subscription in subscriptions:
                await subscription.cancel()
            raise
        if self.resend_after is not None:
            self.late = LateReplies(self.driver, self.transport, self.resend_after)
        loops = [
            asyncio.create_task(self.relay.run()),
            asyncio.create_task(self._deadline_loop()),
        ]
        self.running = True
        try:
            yield
        finally:
            self.running = False
            self.driver.reply_key = None
            for subscription in subscriptions:
                await subscription.cancel()
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.late is not None:
                await self.late.stop()
            if routing is not None:  # late replies: for whoever serves on
                await self.forward_replies([self.driver.worker_id])

    async def forward_replies(self, owners: list[str]) -> None:
        """Move the replies waiting in the own reply queues of ``owners``
        (processes that left) to the shared reply queue (no-op without
        reply routing); a failure is logged: what is left there moves on
        its own after a while (see the transport)."""
        routing = self._routing
        if routing is None:
            return
        for owner in owners:
            try:
                await routing.forward_replies(self.reply_queue, reply_key(owner))
            except SagaError as exc:
                logger.warning(
                    "forwarding replies failed",
                    extra={
                        "action": "replies_forward_failed",
                        "owner": owner,
                        "error": str(exc),
                    },
                )

    async def handle_reply(self, message: Envelope) -> None:
        """Apply a participant's reply (the reply queue's consumer callback).

        Returns once the reply is committed (or found late or duplicate), so the
        transport acknowledges only what is durable.
        """
        if message.kind != "reply":
            raise MalformedMessage(f"the reply queue got a {message.kind}, not a reply")
        if not message.saga_id:
            raise MalformedMessage(f"reply {message.id} names no saga id")
        driver = self.driver
        inst = await adoption.load(driver, message.saga_id)
        if inst is None:
            return  # the saga ended: a late reply
        if ignored_reply(inst.saga, message):
            logger.info(
                "reply to a command sent without a reply wait; ignored",
                extra={"action": "reply_ignored", "saga_id": message.saga_id},
            )
            return
        translated = reply_event(
            inst.saga, message, now=driver.clock.now(), jitter=driver.jitter()
        )
        inbox = InboxEntry(consumer=REPLY_CONSUMER, message_id=message.id)
        with driver.observer.reply_received(inst.saga.name, message):
            await enqueue(inst, translated.event, [translated.entry], inbox)

    async def _deadline_loop(self) -> None:
        names = self.names()
        while True:
            await asyncio.sleep(self.deadline_interval)
            if self.late is not None:
                self.late.check()
            try:
                due = await self.driver.store.due_deadlines(names or self.names())
                for saga_id in due:
                    await self.fire_deadline(saga_id)
            except (StoreError, SagaError) as exc:
                logger.warning(
                    "deadline check failed",
                    extra={"action": "deadline_retry", "error": str(exc)},
                )

    async def fire_deadline(self, saga_id: str) -> None:
        """Fail the remote steps of ``saga_id`` whose reply deadline passed."""
        driver = self.driver
        try:
            inst = await adoption.load(driver, saga_id)
        except (MalformedMessage, DefinitionUnavailable):
            return  # not ours to drive: reported waiting
        if inst is None:
            return
        now = driver.clock.now()
        entries = timed_out_entries(inst.saga, inst.state, now)
        if entries:
            await enqueue(inst, DeadlinePassed(now, driver.jitter()), entries, None)
