"""The outbox relay: publishes what committed transactions left in the outbox.

A message reaches the outbox in the same transaction as the state change
that decided to send it. While the relay runs, the orchestrator writes the
messages that are due already *held* by this relay and hands them over right
after the commit (:meth:`OutboxRelay.publish_now`): no claim, no wait for a
poll. Messages nobody holds (delayed retries, sagas submitted by a process
that does not serve, holds left by a dead process once they expire) are
claimed by the relay's loop. After the broker confirms a message, the relay
forgets it; forgetting is batched: a full batch at once, else every
``flush_interval`` seconds (a commit of its own, so not after every
message: one saga at a time confirms a few hundred messages a second). If
the process dies between publishing and forgetting, the message is
published again once its hold expires: delivery is at-least-once, and
receivers deduplicate by message id.

Publishes are not awaited one by one: a broker confirm can take as long as
the whole round trip to a participant and back (RabbitMQ confirms a
persistent message once it is on disk or acknowledged), so publishing goes
on while earlier confirms are outstanding. A transport that can publish
many messages at once (:class:`~sagakit.ports.transport.BatchPublisher`)
gets everything that is due in one call from one sending loop, and each
confirm is taken by a callback: no task per message. Others get a task per
message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Iterable
from typing import Any

from sagakit.errors import StoreError, TransportError
from sagakit.ports.store import OutboxMessage, SagaStore
from sagakit.ports.transport import BatchPublisher, Transport

logger = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        store: SagaStore,
        transport: Transport,
        *,
        owner: str,
        hold: float = 30.0,
        batch: int = 100,
        poll_interval: float = 0.2,
        max_in_flight: int = 256,
        flush_interval: float = 0.25,
        drain_timeout: float = 5.0,
    ) -> None:
        self.store = store
        self.transport = transport
        self.owner = owner
        self.hold = hold
        self.batch = batch
        self.poll_interval = poll_interval
        self.max_in_flight = max_in_flight
        self.flush_interval = flush_interval
        self.drain_timeout = drain_timeout
        self.published = 0  # confirmed by the broker and forgotten
        self.claimed = 0  # taken by claiming (not handed over by publish_now)
        self._wake = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._confirmed: list[str] = []
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._batches = transport if isinstance(transport, BatchPublisher) else None
        self._outgoing: list[OutboxMessage] = []
        self._send = asyncio.Event()
        self._running = False
        self._starved = False  # the last claim found no room: claim again on a confirm

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is going (only then is :meth:`publish_now` used)."""
        return self._running

    def wake(self) -> None:
        """Messages nobody holds were committed: claim them without waiting
        for the poll."""
        self._wake.set()

    def held(self, message: OutboxMessage, now: float) -> OutboxMessage:
        """``message`` written as held by this relay if it is due at ``now``
        (to be passed to :meth:`publish_now` after the commit); a delayed one
        stays free for the claim loop."""
        if message.available_at > now:
            return message
        return dataclasses.replace(message, held_by=self.owner, hold=self.hold)

    def holding(self, messages: list[OutboxMessage], now: float) -> list[OutboxMessage]:
        """While :meth:`run` goes, ``messages`` written held by this relay (see
        :meth:`held`), so that it publishes them right after the commit
        instead of claiming them; as they are otherwise."""
        if not messages or not self._running:
            return messages
        return [self.held(message, now) for message in messages]

    def publish_now(self, messages: Iterable[OutboxMessage]) -> None:
        """Publish committed messages this relay holds; free ones are claimed."""
        free = False
        for message in messages:
            if message.held_by != self.owner:
                free = True
                continue
            self._start(message)
        if free:
            self._wake.set()

    def _start(self, message: OutboxMessage) -> None:
        """Publish ``message``: handed to the sending loop of a batch
        publisher, else in a task of its own; counted as in flight."""
        if self._batches is not None and self._running:
            self._outgoing.append(message)
            self._send.set()
            return
        task = asyncio.create_task(self._publish(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send_loop(self, publisher: BatchPublisher) -> None:
        """Publish what :meth:`_start` handed over, a batch per call; the
        confirms are taken by :meth:`_sent`."""
        while True:
            await self._send.wait()
            self._send.clear()
            while self._outgoing:
                batch = self._outgoing[: self.batch]
                del self._outgoing[: self.batch]
                try:
                    confirms = await publisher.publish_many(
                        [(m.destination, m.body) for m in batch]
                    )
                except TransportError as exc:
                    for message in batch:
                        self._failed(message, exc)
                    continue
                for message, confirm in zip(batch, confirms, strict=True):
                    future = asyncio.ensure_future(confirm)
                    self._in_flight.add(future)
                    future.add_done_callback(functools.partial(self._sent, message))

    def _sent(self, message: OutboxMessage, done: asyncio.Future[Any]) -> None:
        """A confirm (or a refusal) of a message the sending loop published."""
        self._in_flight.discard(done)
        if self._starved:
            self._wake.set()
        if done.cancelled():
            return  # stopping: still held, released for others
        if (exc := done.exception()) is not None:
            self._failed(message, exc)
        else:
            self._confirm(message)

    def _failed(self, message: OutboxMessage, exc: BaseException) -> None:
        # still held: published again once the hold expires
        logger.warning(
            "publish failed; retried after the hold",
            extra={
                "action": "relay_publish_failed",
                "message_id": message.message_id,
                "error": str(exc),
            },
        )

    def _confirm(self, message: OutboxMessage) -> None:
        self._confirmed.append(message.message_id)
        if len(self._confirmed) >= self.batch:
            self._flush_now.set()

    async def run_once(self) -> int:
        """Publish one batch and wait for its confirms; returns how many went out."""
        messages = await self.store.claim_outbox(
            self.owner, lease=self.hold, limit=self.batch
        )
        self.claimed += len(messages)
        await asyncio.gather(*(self._publish(m) for m in messages))
        sent = len(self._confirmed)
        await self._flush()
        return sent

    async def _publish(self, message: OutboxMessage) -> None:
        try:
            await self.transport.publish_raw(message.destination, message.body)
        except TransportError as exc:
            self._failed(message, exc)
            return
        finally:
            if self._starved:
                self._wake.set()
        self._confirm(message)

    async def _flush(self) -> None:
        if self._confirmed:
            sent, self._confirmed = self._confirmed, []
            try:
                await self.store.mark_sent(sent)
            except StoreError:
                self._confirmed.extend(sent)
                raise
            self.published += len(sent)

    async def run(self) -> None:
        """Publish until cancelled; store and broker errors are retried."""
        self._running = True
        flusher = asyncio.create_task(self._flush_loop())
        sender = None
        if self._batches is not None:
            sender = asyncio.create_task(self._send_loop(self._batches))
        delay = self.poll_interval
        try:
            while True:
                self._wake.clear()
                claimed = 0
                try:
                    room = (
                        self.max_in_flight - len(self._in_flight) - len(self._outgoing)
                    )
                    self._starved = room <= 0
                    if room > 0:
                        messages = await self.store.claim_outbox(
                            self.owner, lease=self.hold, limit=min(self.batch, room)
                        )
                        claimed = len(messages)
                        self.claimed += claimed
                        for message in messages:
                            self._start(message)
                    delay = self.poll_interval
                except (StoreError, TransportError) as exc:
                    logger.warning(
                        "outbox relay failed; retrying",
                        extra={"action": "relay_retry", "error": str(exc)},
                    )
                    delay = min(delay * 2, 5.0)
                if claimed >= self.batch:
                    continue  # more may be waiting
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
        finally:
            self._running = False
            self._outgoing.clear()  # not published: released below
            for loop in (flusher, sender):
                if loop is not None:
                    loop.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await loop
            if self._in_flight:  # let publishes under way finish (briefly):
                # a cancelled one waits out its hold before another relay sends it
                await asyncio.wait(set(self._in_flight), timeout=self.drain_timeout)
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            with contextlib.suppress(StoreError):
                await self._flush()
                # what is still held was not published: free for other relays
                await self.store.release_outbox(self.owner)

    async def _flush_loop(self) -> None:
        """Forget confirmed messages in batches (a full batch at once)."""
        delay = self.flush_interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._flush_now.wait()
            self._flush_now.clear()
            try:
                await self._flush()
                delay = self.flush_interval
            except StoreError as exc:
                logger.warning(
                    "forgetting published messages failed; retrying",
                    extra={"action": "relay_retry", "error": str(exc)},
                )
                delay = min(max(delay, 0.1) * 2, 5.0)
