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
broker redelivers because a consumer died or cancelled do not count.

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

from sagakit.adapters.transport.amqp import (
    DRIVER_ERRORS,
    AmqpTransport,
    Basic,
    HeadersType,
    Incoming,
    aio_pika,
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
    open_body,
    text,
)
from sagakit.errors import TransportError
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


def _properties(message_id: str | None) -> Basic.Properties:
    return Basic.Properties(
        content_type=CONTENT_TYPE, delivery_mode=PERSISTENT, message_id=message_id
    )


class RabbitTransport(AmqpTransport):
    """The :class:`~sagakit.ports.transport.Transport` port on RabbitMQ."""

    name = "RabbitMQ"
    log = logger
    default_prefix = "sagakit"

    async def publish(self, queue: str, message: Envelope) -> None:
        body = encode(message, limit=self.limit)
        await self._publish(
            self.queue_name(queue), body, message_id=message.id, headers={}
        )

    async def publish_raw(self, queue: str, body: bytes) -> None:
        await self._publish(self.queue_name(queue), body, message_id=None, headers={})

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes]]
    ) -> list[Awaitable[Any]]:
        """Write ``messages`` in one go; each awaitable (a future, not a
        task) ends on its confirm, or raises the driver's error (see
        :mod:`~sagakit.adapters.transport.amqp_publisher`)."""
        self._check_open()
        outgoing = []
        for queue, body in messages:
            name = self.queue_name(queue)
            await self._ensure(name)
            outgoing.append((name, body, _properties(None)))
        with self._errors("publishing"):
            channel = await self._channel.get_underlay_channel()
            if batchable(channel):
                sent = await publish_many(channel, outgoing)
                return [
                    self._confirm(name, future)
                    for (name, _, _), future in zip(outgoing, sent, strict=True)
                ]
        return [
            self._publish(name, body, message_id=None, headers={})
            for name, body, _ in outgoing
        ]

    def _confirm(
        self, name: str, confirmation: asyncio.Future[object]
    ) -> asyncio.Future[None]:
        """A future that ends with ``confirmation``, a driver error turned
        into a ``TransportError`` (a callback: no task per message)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(confirmed: asyncio.Future[object]) -> None:
            if done.done():
                return
            if confirmed.cancelled():
                done.cancel()
            elif (exc := confirmed.exception()) is not None:
                error = TransportError(
                    f"{self.broker}: publishing to {name} failed: {error_line(exc)}"
                )
                error.__cause__ = exc
                done.set_exception(error)
            else:
                done.set_result(None)

        confirmation.add_done_callback(settle)
        return done

    async def _publish(
        self,
        name: str,
        body: bytes,
        *,
        message_id: str | None,
        headers: HeadersType,
    ) -> None:
        self._check_open()
        await self._ensure(name)
        if not headers:
            # the hot path (every command and reply): the frame's properties
            # straight to the driver's channel, without building an
            # aio_pika.Message (a few dozen attribute sets per message)
            properties = _properties(message_id)
            with self._errors(f"publishing to {name}"):
                channel = await self._channel.get_underlay_channel()
                if batchable(channel):  # no drain wait, one confirm future
                    sent = await publish_many(channel, [(name, body, properties)])
                    await sent[0]
                else:
                    await channel.basic_publish(
                        body, routing_key=name, properties=properties, mandatory=True
                    )
            return
        amqp_message = aio_pika.Message(
            body,
            headers=headers,
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
        )
        with self._errors(f"publishing to {name}"):
            await self._channel.default_exchange.publish(amqp_message, routing_key=name)

    def _open(self, incoming: Incoming) -> Envelope | str:
        return open_body(incoming.body, self.limit)

    async def _resend(
        self, name: str, incoming: Incoming, headers: HeadersType
    ) -> None:
        await self._publish(
            name, incoming.body, message_id=incoming.message_id, headers=headers
        )

    def _dead_letter_of(self, queue: str, incoming: Incoming) -> DeadLetter:
        return DeadLetter(
            queue=queue,
            body=incoming.body,
            reason=text(incoming.headers.get(REASON_HEADER)),
            dead_at=dead_at(incoming.headers.get(DEAD_AT_HEADER)),
        )
