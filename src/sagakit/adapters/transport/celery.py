"""A transport speaking Celery's wire protocol, so Celery workers take part.

This module holds the broker-independent part (building and reading task
messages, settling deliveries) and :class:`CeleryTransport`, which carries
them over RabbitMQ;
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

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sagakit.adapters.transport.rabbitmq import (
    _DEAD,
    _DRIVER_ERRORS,
    DEAD_AT_HEADER,
    DELIVERIES_HEADER,
    MAX_REASON_CHARS,
    QUEUE_HEADER,
    REASON_HEADER,
    _cancelling,
    _deliveries,
    _one_line,
    _text,
)
from sagakit.adapters.transport.rabbitmq import _driver_errors as rabbit_errors
from sagakit.errors import TransportError
from sagakit.messaging.envelope import (
    MAX_MESSAGE_BYTES,
    Envelope,
    MalformedMessage,
    decode,
    encode,
)
from sagakit.ports.transport import DeadLetter, Handler

try:
    import aio_pika
    from aio_pika.abc import (
        AbstractChannel,
        AbstractIncomingMessage,
        AbstractQueue,
        AbstractRobustConnection,
        HeadersType,
    )
    from celery import Celery
    from kombu.serialization import dumps as kombu_dumps
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "CeleryTransport needs celery and aio-pika: pip install 'sagakit[celery]'"
    ) from exc

logger = logging.getLogger(__name__)

JSON = "application/json"
SUCCESS_SUFFIX = ".response.success"
FAILURE_SUFFIX = ".response.failure"
_SCHEMES = {"amqp": "amqp", "pyamqp": "amqp", "librabbitmq": "amqp", "amqps": "amqps"}
_PICKLE = {"application/x-python-serialize", "application/python-pickle"}


def task_name(message: Envelope) -> str:
    """The Celery task name that carries ``message``."""
    if message.kind == "reply":
        return message.type + (SUCCESS_SUFFIX if message.ok else FAILURE_SUFFIX)
    return message.type


@contextlib.contextmanager
def _driver_errors(action: str) -> Iterator[None]:
    with rabbit_errors(action, "Celery broker"):
        yield


def _broker_url(url: str) -> tuple[str, str]:
    """aio-pika's URL for a Celery broker URL, and ``host:port`` for messages."""
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme)
    if scheme is None:
        raise TransportError(
            f"CeleryTransport speaks AMQP (RabbitMQ) only, not {parts.scheme!r} "
            "broker URLs (CeleryRedisTransport speaks Celery over Redis)"
        )
    default = 5671 if scheme == "amqps" else 5672
    try:
        port = parts.port or default
    except ValueError:
        port = default
    where = f"{parts.hostname or 'localhost'}:{port}"
    return urlunsplit(parts._replace(scheme=scheme)), where


def _is_v2_body(raw: object) -> bool:
    """Whether ``raw`` is shaped like a protocol v2 body: ``[args, kwargs, embed]``."""
    return (
        isinstance(raw, list)
        and len(raw) == 3  # noqa: PLR2004 - the protocol's three parts
        and isinstance(raw[0], list)
        and isinstance(raw[1], dict)
        and (raw[2] is None or isinstance(raw[2], dict))
    )


def _refuse_content(content_type: str | None, headers: Mapping[str, object]) -> None:
    if content_type != JSON:
        kind = " (pickle)" if content_type in _PICKLE else ""
        raise MalformedMessage(
            f"content type {content_type or 'missing'}{kind} refused: sagakit "
            "reads JSON task messages only and never unpickles"
        )
    compression = headers.get("compression")
    if compression:
        raise MalformedMessage(
            f"compressed task messages ({_text(compression)}) are not supported"
        )


def parse_task_message(
    body: bytes,
    *,
    content_type: str | None,
    headers: Mapping[str, object],
    limit: int = MAX_MESSAGE_BYTES,
) -> Envelope:
    """The envelope in a Celery task message, or ``MalformedMessage``.

    Only the content type is looked at before the body is parsed, and the
    body is only ever parsed as JSON."""
    _refuse_content(content_type, headers)
    if len(body) > limit:
        return decode(body, limit=limit)  # raises with the size in the reason
    try:
        raw: Any = json.loads(body)
    except (ValueError, RecursionError):
        return decode(body, limit=limit)  # raises with decode's own reason
    if _is_v2_body(raw):
        args = raw[0]
        if not args or not isinstance(args[0], dict):
            what = type(args[0]).__name__ if args else "missing"
            raise MalformedMessage(
                f"task argument 0 is not an envelope object but {what}"
            )
        message = decode(json.dumps(args[0]).encode(), limit=limit)
    elif isinstance(raw, dict) and "task" in raw and "args" in raw:
        raise MalformedMessage(
            "Celery task message protocol v1 is not supported (use task_protocol 2)"
        )
    else:
        message = decode(body, limit=limit)  # a bare envelope
    task = headers.get("task")
    if task is not None and _text(task) != task_name(message):
        raise MalformedMessage(
            f"task {_text(task)!r} does not carry a {message.kind} of type "
            f"{message.type!r} (expected task {task_name(message)!r})"
        )
    return message


def envelope_bytes(body: bytes, content_type: str | None) -> bytes:
    """``args[0]`` of a JSON Celery task message, re-encoded; else ``body``."""
    if content_type != JSON:
        return body  # never deserialized
    try:
        raw: Any = json.loads(body)
    except (ValueError, RecursionError):
        return body
    if _is_v2_body(raw) and raw[0] and isinstance(raw[0][0], dict):
        return json.dumps(raw[0][0]).encode()
    return body


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """A Celery task message (protocol v2, JSON), before any broker sees it."""

    body: bytes
    headers: dict[str, Any]
    content_type: str
    content_encoding: str
    correlation_id: str | None
    reply_to: str | None


def build_task_message(app: Any, message: Envelope, *, limit: int) -> TaskMessage:
    """The task message that carries ``message``, built by Celery itself
    (``app.amqp.as_task_v2``) and serialized by kombu's JSON serializer."""
    encode(message, limit=limit)  # the envelope's own size limit
    built = app.amqp.as_task_v2(
        message.id, task_name(message), args=[message.model_dump(mode="json")]
    )
    # kombu ships py.typed but leaves dumps unannotated
    content_type, encoding, data = kombu_dumps(  # type: ignore[no-untyped-call]
        built.body, serializer="json"
    )
    properties: dict[str, Any] = built.properties
    return TaskMessage(
        body=data.encode(encoding) if isinstance(data, str) else bytes(data),
        headers=dict(built.headers),
        content_type=content_type,
        content_encoding=encoding,
        correlation_id=properties.get("correlation_id"),
        reply_to=properties.get("reply_to") or None,
    )


def open_task(
    body: bytes,
    *,
    content_type: str | None,
    headers: Mapping[str, object],
    limit: int,
) -> Envelope | str:
    """The envelope in a task message, or why it goes to the DLQ unhandled."""
    try:
        return parse_task_message(
            body, content_type=content_type, headers=headers, limit=limit
        )
    except MalformedMessage as exc:
        return exc.reason
    except Exception as exc:  # json.dumps of args[0], say
        return f"undecodable: {exc!r}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """How to settle a delivered message: acknowledge it (the default),
    dead-letter it with ``reason``, or republish it with ``deliveries``."""

    reason: str | None = None
    deliveries: int = 0


async def run_handler(
    handler: Handler,
    message: Envelope,
    *,
    queue: str,
    deliveries: int,
    max_deliveries: int,
) -> Verdict:
    """Call ``handler`` on its ``deliveries``-th delivery of ``message``.

    Cancelling the calling task propagates; a handler raising
    ``CancelledError`` on its own has failed, like any other exception."""
    try:
        await handler(message)
    except asyncio.CancelledError as exc:
        if _cancelling():
            raise
        failure: BaseException = exc  # raised by the handler itself
    except MalformedMessage as exc:  # the handler says: never valid, no retry
        return Verdict(reason=exc.reason)
    except Exception as exc:
        failure = exc
    else:
        return Verdict()
    if deliveries >= max_deliveries:
        return Verdict(
            reason=f"handler failed {deliveries} times: "
            f"{type(failure).__name__}: {failure}"
        )
    logger.info(
        "handler failed, message requeued",
        extra={"action": "redelivered", "queue": queue, "deliveries": deliveries},
    )
    return Verdict(deliveries=deliveries)


def dead_letter_headers(
    queue: str, headers: Mapping[str, Any], reason: str
) -> dict[str, Any]:
    """``headers`` of a message being dead-lettered from ``queue``, with the
    ``x-sagakit-*`` headers that say why and when (the reason is logged)."""
    reason = reason[:MAX_REASON_CHARS]
    logger.warning(
        "message dead-lettered",
        extra={"action": "dead_lettered", "queue": queue, "reason": reason},
    )
    return {
        **headers,
        REASON_HEADER: reason,
        DEAD_AT_HEADER: time.time(),
        QUEUE_HEADER: queue,
    }


def read_dead_letter(
    queue: str, body: bytes, content_type: str | None, headers: Mapping[str, Any]
) -> DeadLetter:
    """The :class:`DeadLetter` of a task message on a dead-letter queue."""
    dead_at = headers.get(DEAD_AT_HEADER)
    return DeadLetter(
        queue=queue,
        body=envelope_bytes(body, content_type),
        reason=_text(headers.get(REASON_HEADER)),
        dead_at=float(dead_at) if isinstance(dead_at, int | float) else 0.0,
    )


def replay_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """``headers`` of a dead letter without the ``x-sagakit-*`` ones."""
    return {k: v for k, v in headers.items() if k not in _DEAD}


def replayed(queue: str, moved: int) -> int:
    """Log that ``moved`` dead letters of ``queue`` went back; returns ``moved``."""
    if moved:
        logger.info(
            "dead letters replayed",
            extra={"action": "dead_letters_replayed", "queue": queue, "n": moved},
        )
    return moved


class _Subscription:
    def __init__(
        self,
        transport: CeleryTransport,
        channel: AbstractChannel,
        queue: AbstractQueue,
    ) -> None:
        self._transport = transport
        self._channel = channel
        self._queue = queue
        self._tag: str | None = None
        self._inflight: set[asyncio.Task[object]] = set()
        self._cancelled = False

    async def cancel(self) -> None:
        """Stop consuming; unacknowledged messages go back to the queue."""
        if self._cancelled:
            return
        self._cancelled = True
        self._transport._subscriptions.discard(self)
        try:
            if self._tag is not None and not self._channel.is_closed:
                with _driver_errors(f"cancelling the consumer of {self._queue.name}"):
                    await self._queue.cancel(self._tag)
        finally:
            current = asyncio.current_task()
            tasks = [t for t in self._inflight if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self._channel.is_closed:
                with _driver_errors(f"closing the channel of {self._queue.name}"):
                    await self._channel.close()


class CeleryTransport:
    """The :class:`~sagakit.ports.transport.Transport` port as Celery tasks."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
        *,
        limit: int = MAX_MESSAGE_BYTES,
        prefix: str = "",
    ) -> None:
        """Use :meth:`connect`; this takes an open connection and a publish
        channel with publisher confirms."""
        self.limit = limit
        self.prefix = prefix
        self._connection = connection
        self._channel = channel
        self._app = Celery("sagakit", set_as_current=False)  # builds messages only
        self._declared: set[str] = set()
        self._declaring = asyncio.Lock()
        self._subscriptions: set[_Subscription] = set()
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        limit: int = MAX_MESSAGE_BYTES,
        prefix: str = "",
        connect_timeout: float = 10.0,
    ) -> CeleryTransport:
        """Connect to the broker of Celery's ``broker_url``."""
        amqp_url, where = _broker_url(url)
        try:
            connection = await aio_pika.connect_robust(
                amqp_url, timeout=connect_timeout
            )
        except _DRIVER_ERRORS as exc:
            raise TransportError(
                f"cannot connect to the Celery broker at {where}: {_one_line(exc)}"
            ) from exc
        try:
            with _driver_errors("opening the publish channel"):
                channel = await connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
        except TransportError:
            with contextlib.suppress(*_DRIVER_ERRORS):
                await connection.close()
            raise
        return cls(connection, channel, limit=limit, prefix=prefix)

    @property
    def declared_queues(self) -> frozenset[str]:
        """Broker names of the queues this transport declared (tests, cleanup)."""
        return frozenset(self._declared)

    def queue_name(self, queue: str) -> str:
        """The broker's (and Celery's) name for the logical ``queue``."""
        return f"{self.prefix}.{queue}" if self.prefix else queue

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

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("the Celery transport is closed")

    async def _declare(self, channel: AbstractChannel, name: str) -> AbstractQueue:
        with _driver_errors(f"declaring queue {name}"):
            declared = await channel.declare_queue(name, durable=True)
        self._declared.add(name)
        return declared

    async def _ensure(self, name: str) -> None:
        if name in self._declared:
            return
        async with self._declaring:
            if name not in self._declared:
                await self._declare(self._channel, name)

    async def publish(self, queue: str, message: Envelope) -> None:
        self._check_open()
        await self._send(self.queue_name(queue), self.task_message(message))

    async def publish_raw(self, queue: str, body: bytes) -> None:
        self._check_open()
        try:
            message = decode(body, limit=self.limit)
        except MalformedMessage:  # not an envelope: sent as it is, to be dead-lettered
            amqp_message = aio_pika.Message(
                body, content_type=JSON, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
        else:
            amqp_message = self.task_message(message)
        await self._send(self.queue_name(queue), amqp_message)

    async def _send(self, name: str, message: aio_pika.Message) -> None:
        self._check_open()
        await self._ensure(name)
        with _driver_errors(f"publishing to {name}"):
            await self._channel.default_exchange.publish(message, routing_key=name)

    async def _resend(
        self, name: str, incoming: AbstractIncomingMessage, headers: HeadersType
    ) -> None:
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
        name = self.queue_name(queue)
        await self._ensure(f"{name}.dlq")
        with _driver_errors(f"opening a channel to consume {name}"):
            channel = await self._connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=prefetch)
        subscription = _Subscription(self, channel, await self._declare(channel, name))

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                subscription._inflight.add(task)
            try:
                await self._deliver(queue, incoming, handler, max_deliveries)
            except asyncio.CancelledError:
                raise  # not acknowledged: requeued when the channel closes
            except Exception:  # a driver error settling it: it stays unacked
                logger.warning(
                    "message left unacknowledged",
                    exc_info=True,
                    extra={"action": "settle_failed", "queue": queue},
                )
            finally:
                if task is not None:
                    subscription._inflight.discard(task)

        try:
            with _driver_errors(f"consuming {name}"):
                subscription._tag = await subscription._queue.consume(on_message)
        except TransportError:
            await subscription.cancel()
            raise
        self._subscriptions.add(subscription)
        return subscription

    async def _deliver(
        self,
        queue: str,
        incoming: AbstractIncomingMessage,
        handler: Handler,
        max_deliveries: int,
    ) -> None:
        message = open_task(
            incoming.body,
            content_type=incoming.content_type,
            headers=incoming.headers,
            limit=self.limit,
        )
        if isinstance(message, str):
            await self._dead_letter(queue, incoming, message)
            return
        verdict = await run_handler(
            handler,
            message,
            queue=queue,
            deliveries=_deliveries(incoming.headers) + 1,
            max_deliveries=max_deliveries,
        )
        if verdict.reason is not None:
            await self._dead_letter(queue, incoming, verdict.reason)
            return
        if verdict.deliveries:
            await self._resend(
                self.queue_name(queue),
                incoming,
                {**incoming.headers, DELIVERIES_HEADER: verdict.deliveries},
            )
        await incoming.ack()

    async def _dead_letter(
        self, queue: str, incoming: AbstractIncomingMessage, reason: str
    ) -> None:
        headers = dead_letter_headers(queue, incoming.headers, reason)
        await self._resend(f"{self.queue_name(queue)}.dlq", incoming, headers)
        await incoming.ack()

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        self._check_open()
        name = f"{self.queue_name(queue)}.dlq"
        found: list[DeadLetter] = []
        with _driver_errors(f"reading {name}"):
            channel = await self._connection.channel(publisher_confirms=False)
            try:
                dlq = await channel.declare_queue(name, durable=True)
                self._declared.add(name)
                last: AbstractIncomingMessage | None = None
                while len(found) < limit:
                    incoming = await dlq.get(no_ack=False, fail=False)
                    if incoming is None:
                        break
                    last = incoming
                    found.append(
                        read_dead_letter(
                            queue,
                            incoming.body,
                            incoming.content_type,
                            incoming.headers,
                        )
                    )
                if last is not None:  # put them all back, in place
                    await last.nack(multiple=True, requeue=True)
            finally:
                await channel.close()
        return found

    async def replay_dead_letters(self, queue: str, limit: int = 100) -> int:
        """As :meth:`RabbitTransport.replay_dead_letters`: each task message goes
        back as it came, without the ``x-sagakit-*`` headers, confirmed, and is
        only then acknowledged on the dead-letter queue."""
        self._check_open()
        name = self.queue_name(queue)
        dlq_name = f"{name}.dlq"
        moved = 0
        with _driver_errors(f"replaying {dlq_name}"):
            channel = await self._connection.channel(publisher_confirms=False)
            try:
                dlq = await channel.declare_queue(dlq_name, durable=True)
                self._declared.add(dlq_name)
                while moved < limit:
                    incoming = await dlq.get(no_ack=False, fail=False)
                    if incoming is None:
                        break
                    await self._resend(name, incoming, replay_headers(incoming.headers))
                    await incoming.ack()
                    moved += 1
            finally:
                await channel.close()
        return replayed(queue, moved)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for subscription in list(self._subscriptions):
                with contextlib.suppress(TransportError):
                    await subscription.cancel()
        finally:
            with _driver_errors("closing the connection"):
                await self._connection.close()
