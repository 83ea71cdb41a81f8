"""An in-process transport: queues in this event loop, same contract as a broker.

Messages travel as encoded bytes, so the codec, the size limit and
dead-lettering behave as they do over a real broker. Nothing survives the
process: use it for tests, examples and single-process deployments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

from sagakit.adapters.transport.base import BaseSubscription, BaseTransport
from sagakit.adapters.transport.delivery import (
    ACK,
    dead_lettered,
    deliver,
    open_body,
)
from sagakit.messaging.envelope import MAX_MESSAGE_BYTES, Envelope, encode
from sagakit.ports.transport import DeadLetter, Handler

logger = logging.getLogger(__name__)


class _Subscription(BaseSubscription):
    def __init__(self, transport: InProcessTransport) -> None:
        super().__init__(transport)
        self.tasks: list[asyncio.Task[None]] = []

    async def _stop(self) -> None:
        current = asyncio.current_task()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            if task is not current:  # a handler may cancel its own subscription
                with contextlib.suppress(asyncio.CancelledError):
                    await task


class InProcessTransport(BaseTransport):
    """Competing consumers per queue; redelivery on handler errors; DLQ."""

    name = "in-process"

    def __init__(self, *, limit: int = MAX_MESSAGE_BYTES) -> None:
        super().__init__()
        self.limit = limit
        self._queues: dict[str, asyncio.Queue[tuple[bytes, int]]] = defaultdict(
            asyncio.Queue
        )
        self._dead: dict[str, list[DeadLetter]] = defaultdict(list)
        self.published = 0

    async def publish(self, queue: str, message: Envelope) -> None:
        await self.publish_raw(queue, encode(message, limit=self.limit))

    async def publish_raw(self, queue: str, body: bytes) -> None:
        self._check_open()
        self.published += 1
        self._queues[queue].put_nowait((body, 0))

    async def _subscribe(
        self, queue: str, handler: Handler, prefetch: int, max_deliveries: int
    ) -> _Subscription:
        subscription = _Subscription(self)
        subscription.tasks = [
            asyncio.create_task(self._loop(queue, handler, max_deliveries))
            for _ in range(prefetch)
        ]
        return subscription

    async def _loop(self, queue: str, handler: Handler, max_deliveries: int) -> None:
        source = self._queues[queue]
        limit = self.limit
        while True:
            body, deliveries = await source.get()
            opened = open_body(body, limit)
            try:
                verdict = await deliver(handler, opened, deliveries + 1, max_deliveries)
            except asyncio.CancelledError:
                source.put_nowait((body, deliveries))  # not acknowledged
                raise
            if verdict is ACK:
                continue
            if verdict.reason is not None:
                reason = dead_lettered(logger, queue, verdict.reason)
                self._dead[queue].append(
                    DeadLetter(
                        queue=queue, body=body, reason=reason, dead_at=time.time()
                    )
                )
            else:
                source.put_nowait((body, verdict.deliveries))

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return self._dead[queue][:limit]

    async def replay_dead_letters(self, queue: str, limit: int = 100) -> int:
        self._check_open()
        dead = self._dead[queue]
        moved = dead[: max(0, limit)]
        for letter in moved:
            await self.publish_raw(queue, letter.body)  # then removed: at least once
        del dead[: len(moved)]
        return len(moved)

    def pending(self, queue: str) -> int:
        """Messages waiting in ``queue`` (tests)."""
        return self._queues[queue].qsize()
