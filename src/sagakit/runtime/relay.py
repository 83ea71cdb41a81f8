"""The outbox relay: publishes what committed transactions left in the outbox.

A message reaches the outbox in the same transaction as the state change
that decided to send it; the relay publishes it afterwards and forgets it.
If the relay dies between publishing and forgetting, the message is published
again once its hold expires: delivery is at-least-once, and receivers
deduplicate by message id.

Publishes are not awaited one by one: a broker confirm can take as long as
the whole round trip to a participant and back (RabbitMQ confirms a
persistent message once it is on disk or acknowledged), so the relay keeps
claiming and publishing while earlier confirms are outstanding, and forgets
confirmed messages in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sagakit.errors import StoreError, TransportError
from sagakit.ports.store import OutboxMessage, SagaStore
from sagakit.ports.transport import Transport

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
    ) -> None:
        self.store = store
        self.transport = transport
        self.owner = owner
        self.hold = hold
        self.batch = batch
        self.poll_interval = poll_interval
        self.max_in_flight = max_in_flight
        self.published = 0
        self._wake = asyncio.Event()
        self._confirmed: list[str] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """New messages were committed: publish without waiting for the poll."""
        self._wake.set()

    async def run_once(self) -> int:
        """Publish one batch and wait for its confirms; returns how many went out."""
        messages = await self.store.claim_outbox(
            self.owner, lease=self.hold, limit=self.batch
        )
        await asyncio.gather(*(self._publish(m) for m in messages))
        sent = len(self._confirmed)
        await self._flush()
        return sent

    async def _publish(self, message: OutboxMessage) -> None:
        try:
            await self.transport.publish_raw(message.destination, message.body)
        except TransportError as exc:
            # still held: published again once the hold expires
            logger.warning(
                "publish failed; retried after the hold",
                extra={
                    "action": "relay_publish_failed",
                    "message_id": message.message_id,
                    "error": str(exc),
                },
            )
            return
        self._confirmed.append(message.message_id)
        self._wake.set()

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
        delay = self.poll_interval
        try:
            while True:
                self._wake.clear()
                claimed = 0
                try:
                    await self._flush()
                    room = self.max_in_flight - len(self._in_flight)
                    if room > 0:
                        messages = await self.store.claim_outbox(
                            self.owner, lease=self.hold, limit=min(self.batch, room)
                        )
                        claimed = len(messages)
                        for message in messages:
                            task = asyncio.create_task(self._publish(message))
                            self._in_flight.add(task)
                            task.add_done_callback(self._in_flight.discard)
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
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            with contextlib.suppress(StoreError):
                await self._flush()
