"""Consuming an AMQP queue on the driver's own deliveries, acknowledged in batches.

aio-pika's ``queue.consume`` wraps every delivery in an ``IncomingMessage``
(a few dozen attribute sets) and runs the callback in a task of its own, on
top of the task aiormq already starts for it. :class:`RawConsumer` takes
aiormq's delivery as it is (:class:`Delivered` reads the few properties the
adapters use) in aiormq's task, and restores the consumer itself after the
robust connection reconnects.

:class:`Acks` settles deliveries: what the handlers finished is acknowledged
right before the transport's next socket write
(:mod:`~sagakit.adapters.transport.amqp_writes`), many at once with
``multiple`` when no delivery below them is still being handled, else one
by one. A delivery that could not be settled (its handler failed, and
sending it on failed too) is given back with ``basic.reject`` and
``requeue``, to be delivered again: left unacknowledged on a channel that
stays open, it would never come back. One whose handler was cancelled
blocks every ``multiple`` ack above it, so it is never acknowledged by
accident: it is redelivered when the channel closes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from sagakit._extras import needs_extra

with needs_extra(
    "RabbitTransport and CeleryTransport need aio-pika", "rabbitmq", "celery"
):
    from aio_pika.abc import AbstractChannel, HeadersType
    from aiormq.abc import AbstractChannel as DriverChannel
    from aiormq.abc import ChannelFrame, DeliveredMessage
    from pamqp.commands import Basic

from sagakit.adapters.transport.amqp_frames import ack_frames
from sagakit.adapters.transport.amqp_writes import Writes

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
    @property
    def redelivered(self) -> bool | None:
        """Whether the broker delivered it before (and it was given back)."""


class Delivered:
    """A delivery as aiormq hands it over, read like aio-pika's message."""

    __slots__ = ("_properties", "body", "channel", "redelivered", "tag")

    def __init__(self, message: DeliveredMessage) -> None:
        self.body: bytes = message.body
        self.channel: DriverChannel = message.channel
        self.tag: int = message.delivery_tag or 0
        self.redelivered: bool | None = message.redelivered
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
    """The acknowledgements of one consumer's channel, handed to the
    transport's :class:`~sagakit.adapters.transport.amqp_writes.Writes`
    right before it writes (no task: what was settled by then goes
    together, with ``multiple`` where it can)."""

    def __init__(self, log: logging.Logger, queue: str, writes: Writes) -> None:
        self.log = log
        self.queue = queue
        self.writes = writes
        self.sent = 0  # ack frames sent (tests, benchmarks)
        self._channel: DriverChannel | None = None
        self._open: set[int] = set()  # delivered, not settled
        self._settled: list[int] = []  # settled, not acknowledged yet
        self._returned: list[int] = []  # to give back to the broker (requeue)
        self._waiting = False  # a flush of the writes will acknowledge them

    def received(self, delivered: Delivered) -> None:
        """``delivered`` is being handled (not to be acknowledged yet)."""
        if delivered.channel is not self._channel:  # reconnected: tags restart
            self._channel = delivered.channel
            self._open.clear()
            self._settled.clear()
            self._returned.clear()
        self._open.add(delivered.tag)

    def settled(self, delivered: Delivered) -> None:
        """Acknowledge ``delivered`` soon (with others settled by then)."""
        self._close(delivered, self._settled)

    def requeue(self, delivered: Delivered) -> None:
        """Give ``delivered`` back to the broker soon (``basic.reject`` with
        ``requeue``), to be delivered again: it could not be settled (sent
        on, or dead-lettered), and left unacknowledged on a channel that
        stays open it would never come back."""
        self._close(delivered, self._returned)

    def _close(self, delivered: Delivered, into: list[int]) -> None:
        if delivered.channel is not self._channel:
            return  # its channel is gone: the broker delivers it again
        self._open.discard(delivered.tag)
        into.append(delivered.tag)
        if not self._waiting:
            self._waiting = True
            self.writes.before_flush(self.flush)

    def flush(self) -> None:
        """Acknowledge what is settled now, and give back what is to be
        delivered again (handed to the writes)."""
        self._waiting = False
        channel = self._channel
        if not (self._settled or self._returned) or channel is None:
            return
        tags, returned = sorted(self._settled), self._returned
        self._settled, self._returned = [], []
        if channel.is_closed:  # the channel is going: the broker delivers them again
            self.log.warning(
                "messages left unacknowledged",
                extra={"action": "settle_failed", "queue": self.queue},
            )
            return
        lowest_open = min(self._open, default=None)
        below = [t for t in tags if lowest_open is None or t < lowest_open]
        payload = b""
        if returned:  # first: an ack with ``multiple`` after them leaves them be
            rejects = [Basic.Reject(delivery_tag=tag, requeue=True) for tag in returned]
            payload = ChannelFrame.marshall(channel.number, rejects).payload
        # every delivery up to the highest of ``below`` is settled (or given back)
        up_to = below[-1] if below else None
        payload += ack_frames(channel.number, tags[len(below) :], up_to)
        driver: Any = channel  # aiormq's Channel: its connection's writer queue
        self.writes.add(driver.write_queue, payload)
        self.sent += len(returned) + len(tags) - len(below) + (1 if below else 0)

    async def stop(self) -> None:
        """Acknowledge what is settled now (before the channel closes)."""
        self.flush()
        self.writes.flush()


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
