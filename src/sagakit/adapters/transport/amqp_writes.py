"""One socket write for the frames an AMQP transport sends in one turn of
the event loop.

aiormq's writer makes a socket write of each frame it is handed. The frames
this adapter sends at about the same moment (the next command, published
right after the commit that also lets its reply be acknowledged; the
acknowledgements of several deliveries; replies finished together) are
gathered by :class:`Writes` and handed to the connection's writer as one on
the next turn of the loop: one system call, and one wake-up of the broker
instead of several.

Delivery tags follow the order in which a channel's publishes reach the
broker, so a publisher that numbers its messages itself hands its frames
over through :meth:`Writes.add` in that order, and any publish on the same
channel that goes around this buffer calls :meth:`Writes.flush` first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sagakit._extras import needs_extra

with needs_extra(
    "RabbitTransport and CeleryTransport need aio-pika", "rabbitmq", "celery"
):
    from aiormq.abc import ChannelFrame

__all__ = ["Writes"]


class Writes:
    """Frames waiting for the next turn of the loop, for one connection."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Any] | None = None
        self._payloads: list[bytes] = []
        self._hooks: list[Callable[[], None]] = []
        self._scheduled = False
        self._backlog: list[ChannelFrame] = []  # waiting for room in the queue
        self._drainer: asyncio.Task[None] | None = None
        self.writes = 0
        """Frames handed to the connection's writer (tests, benchmarks)."""

    def add(self, queue: asyncio.Queue[Any], payload: bytes) -> None:
        """Send ``payload`` (marshalled frames) through the writer queue
        ``queue`` (aiormq's, of the connection) with the others of this
        turn."""
        if queue is not self._queue:  # another connection: the old one's first
            self.flush()
            self._forget_backlog()  # the old connection is gone: so are they
            self._queue = queue
        self._payloads.append(payload)
        self._schedule()

    def before_flush(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` right before the next flush (it may :meth:`add`
        frames then: acknowledgements gathered until the last moment)."""
        self._hooks.append(hook)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Hand what waits to the writer now (in order, as one frame)."""
        try:
            while self._hooks:
                hooks, self._hooks = self._hooks, []
                for hook in hooks:
                    hook()
        finally:
            self._scheduled = False
            if self._payloads and self._queue is not None:
                payloads, self._payloads = self._payloads, []
                payload = payloads[0] if len(payloads) == 1 else b"".join(payloads)
                self._put(
                    self._queue, ChannelFrame(payload=payload, should_close=False)
                )
                self.writes += 1

    def _put(self, queue: asyncio.Queue[Any], frame: ChannelFrame) -> None:
        """Into the writer's queue (it holds a few frames at most: while it
        is full, frames wait here, in order, for a task that puts them)."""
        if not self._backlog and not queue.full():
            queue.put_nowait(frame)
            return
        self._backlog.append(frame)
        if self._drainer is None:
            self._drainer = asyncio.ensure_future(self._drain(queue))

    async def _drain(self, queue: asyncio.Queue[Any]) -> None:
        try:
            while self._backlog:
                await queue.put(self._backlog[0])
                self._backlog.pop(0)
        finally:
            if self._drainer is asyncio.current_task():
                self._drainer = None

    def _forget_backlog(self) -> None:
        self._backlog.clear()
        if self._drainer is not None:
            self._drainer.cancel()
            self._drainer = None
