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

from sagakit.errors import TransportError
from sagakit.messaging.envelope import (
    MAX_MESSAGE_BYTES,
    Envelope,
    MalformedMessage,
    decode,
    encode,
)
from sagakit.ports.transport import DeadLetter, Handler

logger = logging.getLogger(__name__)


def _cancelling() -> bool:
    """Whether this task is being cancelled (rather than a handler raising
    ``CancelledError`` on its own, which counts as a failed delivery)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _Subscription:
    def __init__(
        self, transport: InProcessTransport, queue: str, tasks: list[asyncio.Task[None]]
    ) -> None:
        self._transport = transport
        self._queue = queue
        self._tasks = tasks

    async def cancel(self) -> None:
        self._transport._subscriptions.discard(self)
        current = asyncio.current_task()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            if task is not current:  # a handler may cancel its own subscription
                with contextlib.suppress(asyncio.CancelledError):
                    await task


class InProcessTransport:
    """Competing consumers per queue; redelivery on handler errors; DLQ."""

    def __init__(self, *, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.limit = limit
        self._queues: dict[str, asyncio.Queue[tuple[bytes, int]]] = defaultdict(
            asyncio.Queue
        )
        self._dead: dict[str, list[DeadLetter]] = defaultdict(list)
        self._subscriptions: set[_Subscription] = set()
        self.published = 0
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("the in-process transport is closed")

    async def publish(self, queue: str, message: Envelope) -> None:
        await self.publish_raw(queue, encode(message, limit=self.limit))

    async def publish_raw(self, queue: str, body: bytes) -> None:
        self._check_open()
        self.published += 1
        self._queues[queue].put_nowait((body, 0))

    async def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int = 32,
        max_deliveries: int = 5,
    ) -> _Subscription:
        self._check_open()
        if prefetch < 1 or max_deliveries < 1:
            raise TransportError("prefetch and max_deliveries must be >= 1")
        tasks = [
            asyncio.create_task(self._loop(queue, handler, max_deliveries))
            for _ in range(prefetch)
        ]
        subscription = _Subscription(self, queue, tasks)
        self._subscriptions.add(subscription)
        return subscription

    async def _loop(self, queue: str, handler: Handler, max_deliveries: int) -> None:
        source = self._queues[queue]
        while True:
            body, deliveries = await source.get()
            try:
                message = decode(body, limit=self.limit)
            except MalformedMessage as exc:
                self._dead_letter(queue, body, exc.reason)
                continue
            except Exception as exc:  # json.loads: RecursionError on deep nesting
                self._dead_letter(queue, body, f"undecodable: {type(exc).__name__}")
                continue
            try:
                await handler(message)
            except asyncio.CancelledError as exc:
                if _cancelling():
                    source.put_nowait((body, deliveries))  # not acknowledged
                    raise
                failure: BaseException = exc  # raised by the handler itself
            except MalformedMessage as exc:  # the handler says: never valid
                self._dead_letter(queue, body, exc.reason)
                continue
            except Exception as exc:
                failure = exc
            else:
                continue
            if deliveries + 1 >= max_deliveries:
                self._dead_letter(
                    queue,
                    body,
                    f"handler failed {deliveries + 1} times: "
                    f"{type(failure).__name__}: {failure}",
                )
            else:
                source.put_nowait((body, deliveries + 1))

    def _dead_letter(self, queue: str, body: bytes, reason: str) -> None:
        logger.warning(
            "message dead-lettered",
            extra={"action": "dead_lettered", "queue": queue, "reason": reason},
        )
        self._dead[queue].append(DeadLetter(queue, body, reason, time.time()))

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

    async def close(self) -> None:
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.cancel()
