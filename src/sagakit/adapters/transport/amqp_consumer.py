"""Consuming an AMQP queue on the driver's own deliveries, acknowledged in batches.

aio-pika's ``queue.consume`` wraps every delivery in an ``IncomingMessage``
(a few dozen attribute sets) and runs the callback in a task of its own, on
top of the task aiormq already starts for it. :class:`RawConsumer` takes
aiormq's delivery as it is (:class:`Delivered` reads the few properties the
adapters use) in aiormq's task, and restores the consumer itself after the
robust connection reconnects.

:class:`Acks` settles deliveries: what the handlers finished is acknowledged
by one loop, many at once with ``multiple`` when no delivery below them is
still being handled, else one by one. A delivery that was never settled
(its handler was cancelled, or settling it failed) blocks every
``multiple`` ack above it, so it is never acknowledged by accident: it is
redelivered when the channel closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from sagakit._extras import needs_extra

with needs_extra(
    "RabbitTransport and CeleryTransport need aio-pika", "rabbitmq", "celery"
):
    from aio_pika.abc import AbstractChannel, HeadersType
    from aiormq.abc import AbstractChannel as DriverChannel
    from aiormq.abc import DeliveredMessage

__all__ = ["Acks", "Delivered", "Incoming", "RawConsumer"]


class Incoming(Protocol):
    """What the AMQP adapters read of a message they received (a
    :class:`Delivered` when consuming, aio-pika's message from ``basic.get``)."""

    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> HeadersType: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def content_encoding(self) -> str | None: ...
    @property
    def priority(self) -> int | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def reply_to(self) -> str | None: ...


class Delivered:
    """A delivery as aiormq hands it over, read like aio-pika's message."""

    __slots__ = ("_properties", "body", "channel", "tag")

    def __init__(self, message: DeliveredMessage) -> None:
        self.body: bytes = message.body
        self.channel: DriverChannel = message.channel
        self.tag: int = message.delivery_tag or 0
        self._properties = message.header.properties

    @property
    def headers(self) -> HeadersType:
        return self._properties.headers or {}

    @property
    def message_id(self) -> str | None:
        return self._properties.message_id

    @property
    def content_type(self) -> str | None:
        return self._properties.content_type

    @property
    def content_encoding(self) -> str | None:
        return self._properties.content_encoding

    @property
    def priority(self) -> int | None:
        return self._properties.priority

    @property
    def correlation_id(self) -> str | None:
        return self._properties.correlation_id

    @property
    def reply_to(self) -> str | None:
        return self._properties.reply_to


class Acks:
    """The acknowledgements of one consumer's channel, sent by one loop."""

    def __init__(
        self,
        log: logging.Logger,
        queue: str,
        errors: tuple[type[BaseException], ...],
    ) -> None:
        self.log = log
        self.queue = queue
        self.errors = errors
        self.sent = 0  # ack frames written (tests, benchmarks)
        self._channel: DriverChannel | None = None
        self._open: set[int] = set()  # delivered, not settled
        self._settled: list[int] = []  # settled, not acknowledged yet
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def received(self, delivered: Delivered) -> None:
        """``delivered`` is being handled (not to be acknowledged yet)."""
        if delivered.channel is not self._channel:  # reconnected: tags restart
            self._channel = delivered.channel
            self._open.clear()
            self._settled.clear()
        self._open.add(delivered.tag)

    def settled(self, delivered: Delivered) -> None:
        """Acknowledge ``delivered`` soon (with others settled by then)."""
        if delivered.channel is not self._channel:
            return  # its channel is gone: the broker delivers it again
        self._open.discard(delivered.tag)
        self._settled.append(delivered.tag)
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Acknowledge what is settled now."""
        if not self._settled or self._channel is None:
            return
        channel, tags = self._channel, sorted(self._settled)
        self._settled = []
        lowest_open = min(self._open, default=None)
        below = [t for t in tags if lowest_open is None or t < lowest_open]
        try:
            if below:  # every delivery up to it is settled
                await channel.basic_ack(below[-1], multiple=True, wait=False)
                self.sent += 1
            for tag in tags[len(below) :]:
                await channel.basic_ack(tag, wait=False)
                self.sent += 1
        except self.errors:  # the channel is going: the broker delivers them again
            self.log.warning(
                "messages left unacknowledged",
                exc_info=True,
                extra={"action": "settle_failed", "queue": self.queue},
            )

    async def stop(self) -> None:
        """Acknowledge what is settled, then stop the loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


Callback = Callable[[DeliveredMessage], Coroutine[Any, Any, None]]


class RawConsumer:
    """A ``basic.consume`` of ``queue`` on ``channel`` (a robust aio-pika
    channel) whose callback gets aiormq's deliveries; consuming starts again
    whenever the channel is reopened after a reconnect."""

    def __init__(
        self, channel: AbstractChannel, queue: str, callback: Callback
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.callback = callback
        self.tag: str | None = None
        self._reopened: Any = None

    async def start(self) -> None:
        await self._consume()
        callbacks = getattr(self.channel, "reopen_callbacks", None)
        if callbacks is not None:

            async def reopened(*_: object) -> None:
                await self._consume()

            self._reopened = reopened
            callbacks.add(reopened)

    async def _consume(self) -> None:
        underlay = await self.channel.get_underlay_channel()
        ok = await underlay.basic_consume(
            self.queue, self.callback, consumer_tag=self.tag
        )
        self.tag = ok.consumer_tag

    async def cancel(self) -> None:
        callbacks = getattr(self.channel, "reopen_callbacks", None)
        if callbacks is not None and self._reopened is not None:
            callbacks.discard(self._reopened)
            self._reopened = None
        if self.tag is not None and not self.channel.is_closed:
            underlay = await self.channel.get_underlay_channel()
            await underlay.basic_cancel(self.tag)
