"""A transport speaking Celery's wire protocol, so Celery workers take part.

The broker-independent part (building and reading task messages) is in
:mod:`sagakit.adapters.transport.celery_wire`; this module holds
:class:`CeleryTransport`, which carries them over RabbitMQ;
:class:`~sagakit.adapters.transport.celery_redis.CeleryRedisTransport`
carries the same messages over Redis, as kombu's Redis transport stores them.

Every envelope travels as a Celery task message (message protocol v2, JSON):

- the task name is the envelope's ``type`` for commands and events, and
  ``{type}.response.success`` or ``{type}.response.failure`` for replies;
- the task's single positional argument is the envelope as a JSON object, so a
  Celery task ``def create_ticket(envelope: dict)`` reads it as it is;
- the Celery task id is the envelope id.

The headers, properties and body are built by Celery itself
(``app.amqp.as_task_v2``) and serialized by kombu's JSON serializer, so a real
Celery worker consuming the queue (``celery worker -Q <queue>``) runs the task,
and a Celery service replying with ``app.send_task(name, args=[reply],
queue=reply_to)`` is understood here. In :class:`CeleryTransport` the AMQP
I/O itself (publisher confirms, prefetch, counted redelivery) goes through
aio-pika, exactly as in :mod:`sagakit.adapters.transport.rabbitmq`: the broker
is RabbitMQ (``amqp://``, ``amqps://`` or Celery's ``pyamqp://`` URLs). For a
Celery app with ``broker="redis://..."`` use ``celery+redis://`` instead
(:mod:`sagakit.adapters.transport.celery_redis`).

**Queues** carry the names Celery uses, without a prefix by default, and are
declared durable with no arguments, as Celery declares them. Messages are
published to the default exchange with the queue's name as routing key, which
reaches the same queue as Celery's per-queue direct exchange.

**Consuming** accepts only ``application/json`` bodies. Pickle (or YAML,
msgpack, compressed) messages are dead-lettered at once and never
deserialized. A body that is not ``[args, kwargs, embed]`` is read as a bare
envelope (what :class:`~sagakit.adapters.transport.rabbitmq.RabbitTransport`
sends); anything that is neither is dead-lettered with
:func:`~sagakit.messaging.envelope.decode`'s reason. A Celery message whose
``task`` header disagrees with its envelope is dead-lettered too.

**Failures** are counted as in the RabbitMQ adapter: the message is republished
to the end of its queue with the header ``x-sagakit-deliveries`` incremented,
and after ``max_deliveries`` it goes to ``<queue>.dlq``, kept as it arrived
(a pickle stays inert bytes) with ``x-sagakit-reason``, ``x-sagakit-dead-at``
and ``x-sagakit-queue`` headers. ``dead_letters`` reports, as ``body``, the
envelope (``args[0]``, re-encoded) of a JSON Celery message and the raw body of
anything else; ``replay_dead_letters`` sends them back to their queue as they
came, without those headers.

``publish_raw`` wraps bytes that decode as an envelope in a task message;
other bytes are sent as they are (tests of dead-lettering, replaying).
"""

from __future__ import annotations

import functools
import logging
from urllib.parse import urlsplit, urlunsplit

from sagakit.adapters.transport.amqp import (
    AbstractExchange,
    AmqpTransport,
    HeadersType,
    Incoming,
    aio_pika,
)
from sagakit.adapters.transport.celery_wire import (
    FAILURE_SUFFIX,
    JSON,
    SUCCESS_SUFFIX,
    Celery,
    TaskMessage,
    build_task_message,
    envelope_bytes,
    message_app,
    open_task,
    parse_task_message,
    read_dead_letter,
    task_name,
)
from sagakit.errors import TransportError
from sagakit.messaging.envelope import (
    Envelope,
    MalformedMessage,
    decode,
)
from sagakit.ports.transport import DeadLetter

__all__ = [
    "FAILURE_SUFFIX",
    "JSON",
    "SUCCESS_SUFFIX",
    "CeleryTransport",
    "TaskMessage",
    "build_task_message",
    "envelope_bytes",
    "parse_task_message",
    "task_name",
]

logger = logging.getLogger(__name__)

_SCHEMES = {"amqp": "amqp", "pyamqp": "amqp", "librabbitmq": "amqp", "amqps": "amqps"}


class CeleryTransport(AmqpTransport):
    """The :class:`~sagakit.ports.transport.Transport` port as Celery tasks."""

    name = "Celery"
    broker = "Celery broker"
    connect_name = "the Celery broker"
    log = logger

    @functools.cached_property
    def _app(self) -> Celery:
        return message_app()

    @classmethod
    def _amqp_url(cls, url: str) -> str:
        """aio-pika's URL for a Celery broker URL."""
        parts = urlsplit(url)
        scheme = _SCHEMES.get(parts.scheme)
        if scheme is None:
            raise TransportError(
                f"CeleryTransport speaks AMQP (RabbitMQ) only, not {parts.scheme!r} "
                "broker URLs (CeleryRedisTransport speaks Celery over Redis)"
            )
        return urlunsplit(parts._replace(scheme=scheme))

    def task_message(self, message: Envelope) -> aio_pika.Message:
        """The Celery task message (protocol v2, JSON) that carries ``message``."""
        built = build_task_message(self._app, message, limit=self.limit)
        content_type = built.content_type
        return aio_pika.Message(
            built.body,
            headers=built.headers,
            content_type=content_type,
            content_encoding=built.content_encoding,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            priority=0,
            correlation_id=built.correlation_id,
            reply_to=built.reply_to,
        )

    async def publish(self, queue: str, message: Envelope) -> None:
        self._check_open()
        await self._send(self.queue_name(queue), self.task_message(message))

    async def publish_raw(self, queue: str, body: bytes) -> None:
        self._check_open()
        await self._send(self.queue_name(queue), self._raw_message(body))

    def _raw_message(self, body: bytes) -> aio_pika.Message:
        """The task message for envelope bytes; other bytes as they are."""
        try:
            message = decode(body, limit=self.limit)
        except MalformedMessage:  # not an envelope: sent as it is, to be dead-lettered
            return aio_pika.Message(
                body, content_type=JSON, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
        return self.task_message(message)

    async def _publish_routed(
        self, exchange: AbstractExchange, key: str, body: bytes
    ) -> None:
        message = self._raw_message(body)
        with self._errors(f"publishing to {exchange.name}"):
            await self.publish_ready()
            await exchange.publish(message, routing_key=key)

    async def _send(self, name: str, message: aio_pika.Message) -> None:
        self._check_open()
        await self.ensure(name)
        with self._errors(f"publishing to {name}"):
            await self.publish_ready()
            await self._channel.default_exchange.publish(message, routing_key=name)

    def open_message(self, incoming: Incoming) -> Envelope | str:
        return open_task(
            incoming.body,
            content_type=incoming.content_type,
            headers=incoming.headers,
            limit=self.limit,
        )

    async def resend(self, name: str, incoming: Incoming, headers: HeadersType) -> None:
        """Publish ``incoming`` again, as it came, with other headers."""
        await self._send(
            name,
            aio_pika.Message(
                incoming.body,
                headers=headers,
                content_type=incoming.content_type,
                content_encoding=incoming.content_encoding,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                priority=incoming.priority,
                correlation_id=incoming.correlation_id,
                reply_to=incoming.reply_to,
                message_id=incoming.message_id,
            ),
        )

    def dead_letter_of(self, queue: str, incoming: Incoming) -> DeadLetter:
        return read_dead_letter(
            queue, incoming.body, incoming.content_type, incoming.headers
        )
