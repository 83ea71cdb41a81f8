"""The outbox relay: publishes what committed transactions left in the outbox.

A message reaches the outbox in the same transaction as the state change
that decided to send it; the relay publishes it afterwards and forgets it.
If the relay dies between publishing and forgetting, the message is published
again once its hold expires: delivery is at-least-once, and receivers
deduplicate by message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sagakit.errors import StoreError, TransportError
from sagakit.ports.store import SagaStore
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
    ) -> None:
        self.store = store
        self.transport = transport
        self.owner = owner
        self.hold = hold
        self.batch = batch
        self.poll_interval = poll_interval
        self.published = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New messages were committed: publish without waiting for the poll."""
        self._wake.set()

    async def run_once(self) -> int:
        """Publish one batch; returns how many messages went out."""
        messages = await self.store.claim_outbox(
            self.owner, lease=self.hold, limit=self.batch
        )
        sent: list[str] = []
        try:
            for message in messages:
                await self.transport.publish_raw(message.destination, message.body)
                sent.append(message.message_id)
        finally:
            if sent:
                await self.store.mark_sent(sent)
                self.published += len(sent)
        return len(sent)

    async def run(self) -> None:
        """Publish until cancelled; store and broker errors are retried."""
        delay = self.poll_interval
        while True:
            self._wake.clear()
            try:
                count = await self.run_once()
                delay = self.poll_interval
            except (StoreError, TransportError) as exc:
                logger.warning(
                    "outbox relay failed; retrying",
                    extra={"action": "relay_retry", "error": str(exc)},
                )
                count = 0
                delay = min(delay * 2, 5.0)
            if count >= self.batch:
                continue  # more may be waiting
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
