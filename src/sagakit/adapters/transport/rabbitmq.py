"""A RabbitMQ transport on aio-pika: durable queues, confirms, counted redelivery.

Layout on the broker, for a logical queue ``q`` and the default prefix:

- ``sagakit.q``: a durable classic queue, fed through the default exchange with
  persistent (``delivery_mode=2``) ``application/json`` messages whose
  ``message_id`` is the envelope id. Queues are declared on first use, by
  ``publish`` as well as ``consume``, so messages sent before any consumer
  exists are kept.
- ``sagakit.q.dlq``: the durable dead-letter queue. The adapter publishes dead
  letters there itself, with the headers ``x-sagakit-reason``,
  ``x-sagakit-dead-at`` (Unix time) and ``x-sagakit-queue``. The broker's own
  dead-lettering (DLX) is not used: it would lose the reason.

Publishing uses one channel with publisher confirms (``publish`` returns once
the broker has the message) and ``mandatory`` routing (an unroutable message
raises instead of vanishing). Each ``consume`` gets its own channel, so its QoS
prefetch is its own and cancelling it cannot disturb publishing.

**Counting deliveries.** AMQP tells a consumer only *whether* a message was
delivered before (``redelivered``), not how often. So when a handler raises,
the adapter republishes the message to the end of the same queue with the
header ``x-sagakit-deliveries`` incremented, waits for the confirm, and then
acknowledges the original. Once the count reaches ``max_deliveries`` the
message goes to the dead-letter queue instead. Consequences: a failed message
moves behind the messages queued after it; a crash between the republish and
the ack leaves two copies (delivery is at least once anyway); and messages the
broker redelivers because a consumer died or cancelled do not count. When the
broker refuses the republish (or the dead-lettering), the consumer gives the
message back and remembers it, so that delivery counts too, and a message the
dead-letter queue refuses stays in its queue until it is taken
(:mod:`~sagakit.adapters.transport.amqp_given_back`).

**Reading dead letters** (``dead_letters``) takes up to ``limit`` messages with
``basic.get`` on a short-lived channel, without acknowledging them, and then
rejects them all at once with ``requeue``; RabbitMQ puts requeued messages back
at their original positions, so the order (oldest first) and the contents are
unchanged. While a read is in progress those messages are briefly invisible to
other readers of the dead-letter queue. **Replaying** them
(``replay_dead_letters``) republishes each to its queue, confirmed and without
the ``x-sagakit-*`` headers, before acknowledging it on the dead-letter queue.

Driver errors never escape: they become :class:`~sagakit.errors.TransportError`
with the driver's exception as ``__cause__``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sagakit.adapters.transport.amqp import (
    DRIVER_ERRORS,
    AbstractExchange,
    AmqpTransport,
    Basic,
    HeadersType,
    Incoming,
    aio_pika,
)
from sagakit.adapters.transport.amqp_batching import (
    Coalescer,
    Destination,
    settle_with,
)
from sagakit.adapters.transport.amqp_publisher import batchable, publish_many
from sagakit.adapters.transport.delivery import (
    DEAD_AT_HEADER,
    DEAD_HEADERS,
    DELIVERIES_HEADER,
    MAX_REASON_CHARS,
    QUEUE_HEADER,
    REASON_HEADER,
    dead_at,
    error_line,
    text,
)
from sagakit.errors import TransportError
from sagakit.messaging.batch import Part, group
from sagakit.messaging.batch import open_body as open_any
from sagakit.messaging.envelope import Envelope, encode
from sagakit.ports.transport import DeadLetter

__all__ = [
    "CONTENT_TYPE",
    "DEAD_AT_HEADER",
    "DEAD_HEADERS",
    "DELIVERIES_HEADER",
    "DRIVER_ERRORS",
    "MAX_REASON_CHARS",
    "PERSISTENT",
    "QUEUE_HEADER",
    "REASON_HEADER",
    "RabbitTransport",
]

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"
PERSISTENT = 2  # delivery_mode: written to disk by the broker


_KIND = (CONTENT_TYPE, PERSISTENT)  # of every message publish_many writes


def _properties(message_id: str | None) -> Basic.Properties:
    return Basic.Properties(
        content_type=CONTENT_TYPE, delivery_mode=PERSISTENT, message_id=message_id
    )


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def batch_option(url: str) -> tuple[str, bool]:
    """``url`` without its ``batch`` query parameter, and that parameter
    (``true``/``false``, default false; anything else is a ``TransportError``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    values = [v for k, v in query if k == "batch"]
    if not values:
        return url, False
    value = values[-1].strip().lower()
    if value not in _TRUE + _FALSE:
        raise TransportError(
            f"the transport URL's batch={values[-1][:20]!r} is not true or false"
        )
    kept = urlencode([(k, v) for k, v in query if k != "batch"])
    return urlunsplit(parts._replace(query=kept)), value in _TRUE


class RabbitTransport(AmqpTransport):
    """The :class:`~sagakit.ports.transport.Transport` port on RabbitMQ."""

    name = "RabbitMQ"
    log = logger
    default_prefix = "sagakit"

    _coalescer: Coalescer | None = None
    _checked: object = None
    _batches = False
    batch = False
    """Whether messages published together to one queue go as one broker
    message (see :mod:`~sagakit.adapters.transport.amqp_batching`): the
    URL's ``batch`` parameter, or set it after connecting."""

    @classmethod
    def _amqp_url(cls, url: str) -> str:
        return batch_option(url)[0]

    def _configure(self, url: str) -> None:
        """``?batch=true`` in the URL turns :attr:`batch` on."""
        self.batch = batch_option(url)[1]

    async def publish(self, queue: str, message: Envelope) -> None:
        body = encode(message, limit=self.limit)
        await self._send(("", self.queue_name(queue)), body, message.id)

    async def publish_raw(self, queue: str, body: bytes) -> None:
        await self._send(("", self.queue_name(queue)), body, None)

    async def _publish_routed(
        self, exchange: AbstractExchange, key: str, body: bytes
    ) -> None:
        await self._send((exchange.name, key), body, None)

    async def _send(self, to: Destination, body: bytes, message_id: str | None) -> None:
        """Publish ``body`` to ``to`` (a queue, when its exchange is the
        default one: declared first); returns on the broker's confirm."""
        self._check_open()
        if not to[0]:
            await self.ensure(to[1])
        if not self.batch:
            # the hot path (every command and reply): the frame's properties
            # straight to the driver's channel, without building an
            # aio_pika.Message (a few dozen attribute sets per message)
            with self._errors(f"publishing to {to[1]}"):
                channel, batches = await self._underlay()
                if batches:  # no drain wait, one confirm future
                    outgoing = [(*to, body, message_id)]
                    sent = await publish_many(
                        channel, outgoing, self.writes, kind=_KIND
                    )
                    await sent[0]
                else:
                    self.writes.flush()  # what waits goes first (tag order)
                    await channel.basic_publish(
                        body,
                        exchange=to[0],
                        routing_key=to[1],
                        properties=_properties(message_id),
                        mandatory=True,
                    )
            return
        if self._coalescer is None:
            self._coalescer = Coalescer(self._write_many)
        await self._coalescer.publish(to, body)

    async def _underlay(self) -> tuple[Any, bool]:
        """The driver's publish channel, and whether :func:`publish_many`
        works on it (checked once per channel: a reconnect brings another)."""
        channel = await self.publish_channel()
        if channel is not self._checked:
            self._checked, self._batches = channel, batchable(channel)
        return channel, self._batches

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes]]
    ) -> list[Awaitable[Any]]:
        """Write ``messages`` in one go (batched per queue with ``batch``);
        each awaitable (a future, not a task) ends on the confirm of what
        carries its message, or raises ``TransportError`` (see
        :mod:`~sagakit.adapters.transport.amqp_publisher`)."""
        self._check_open()
        outgoing: list[tuple[Destination, bytes]] = []
        for queue, body in messages:
            name = self.queue_name(queue)
            await self.ensure(name)
            outgoing.append((("", name), body))
        return await self._write_many(outgoing)

    async def _write_many(
        self, outgoing: Sequence[tuple[Destination, bytes]]
    ) -> list[Awaitable[Any]]:
        """:meth:`publish_many` to destinations already declared."""
        if self.batch:
            carried = group(outgoing, self.limit)
        else:
            carried = [(to, body, [i]) for i, (to, body) in enumerate(outgoing)]
        with self._errors("publishing"):
            channel, batches = await self._underlay()
            if batches:
                sent = await publish_many(
                    channel,
                    [(*to, body, None) for to, body, _ in carried],
                    self.writes,
                    kind=_KIND,
                )
                confirms: dict[int, Awaitable[Any]] = {}
                for (to, _, members), future in zip(carried, sent, strict=True):
                    confirm = self._confirm(to[1], future)
                    confirms.update(dict.fromkeys(members, confirm))
                return [confirms[index] for index in range(len(outgoing))]
        return [  # a driver without what publish_many needs: one by one
            self._send_alone(to, body) for to, body in outgoing
        ]

    async def _send_alone(self, to: Destination, body: bytes) -> None:
        """One message of a batch the driver cannot write at once."""
        self.writes.flush()  # what waits goes first (tag order)
        with self._errors(f"publishing to {to[1]}"):
            channel = await self.publish_channel()
            await channel.basic_publish(
                body,
                exchange=to[0],
                routing_key=to[1],
                properties=_properties(None),
                mandatory=True,
            )

    async def _disconnect(self) -> None:
        if self._coalescer is not None:
            await self._coalescer.close()
        await super()._disconnect()

    def _confirm(
        self, name: str, confirmation: asyncio.Future[object]
    ) -> asyncio.Future[None]:
        """A future that ends with ``confirmation``, a driver error turned
        into a ``TransportError`` (a callback: no task per message)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def failed(exc: BaseException) -> TransportError:
            error = TransportError(
                f"{self.broker}: publishing to {name} failed: {error_line(exc)}"
            )
            error.__cause__ = exc
            return error

        settle_with(done, confirmation, failed)
        return done

    async def _publish(
        self, name: str, body: bytes, *, message_id: str | None, headers: HeadersType
    ) -> None:
        """Publish to the queue ``name`` with ``headers`` (a message sent
        again, or dead-lettered: not the hot path), confirmed."""
        self._check_open()
        await self.ensure(name)
        amqp_message = aio_pika.Message(
            body,
            headers=headers,
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
        )
        self.writes.flush()  # what waits goes first (tag order)
        with self._errors(f"publishing to {name}"):
            await self.publish_ready()
            await self._channel.default_exchange.publish(amqp_message, routing_key=name)

    def open_message(self, incoming: Incoming) -> Envelope | list[Part] | str:
        return open_any(incoming.body, self.limit)

    async def resend_body(
        self, name: str, body: bytes, message_id: str | None, headers: HeadersType
    ) -> None:
        await self._publish(name, body, message_id=message_id, headers=headers)

    async def resend(self, name: str, incoming: Incoming, headers: HeadersType) -> None:
        await self._publish(
            name, incoming.body, message_id=incoming.message_id, headers=headers
        )

    def dead_letter_of(self, queue: str, incoming: Incoming) -> DeadLetter:
        return DeadLetter(
            queue=queue,
            body=incoming.body,
            reason=text(incoming.headers.get(REASON_HEADER)),
            dead_at=dead_at(incoming.headers.get(DEAD_AT_HEADER)),
        )
