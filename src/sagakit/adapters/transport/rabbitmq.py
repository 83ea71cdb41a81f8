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
import contextlib
import errno
import logging
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

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
    from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
    from pamqp.commands import Basic
    from pamqp.exceptions import PAMQPException
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "RabbitTransport needs aio-pika: pip install 'sagakit[rabbitmq]'"
    ) from exc

logger = logging.getLogger(__name__)

DELIVERIES_HEADER = "x-sagakit-deliveries"
REASON_HEADER = "x-sagakit-reason"
DEAD_AT_HEADER = "x-sagakit-dead-at"
QUEUE_HEADER = "x-sagakit-queue"
CONTENT_TYPE = "application/json"
PERSISTENT = 2  # delivery_mode: written to disk by the broker
_DEAD = frozenset({DELIVERIES_HEADER, REASON_HEADER, DEAD_AT_HEADER, QUEUE_HEADER})
"""Headers dropped when a dead letter is replayed."""
MAX_REASON_CHARS = 2000

_DRIVER_ERRORS = (AMQPError, ChannelInvalidStateError, PAMQPException, OSError)
"""What aio-pika/aiormq raise; ``OSError`` covers sockets and ``TimeoutError``."""


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.args and exc.args[0] == errno.ECONNREFUSED:
        return "connection refused"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def _driver_errors(action: str, broker: str = "RabbitMQ") -> Iterator[None]:
    try:
        yield
    except _DRIVER_ERRORS as exc:
        raise TransportError(f"{broker}: {action} failed: {_one_line(exc)}") from exc


def _where(url: str) -> str:
    parts = urlsplit(url)
    default = 5671 if parts.scheme == "amqps" else 5672
    try:
        port = parts.port or default
    except ValueError:
        port = default
    return f"{parts.hostname or 'localhost'}:{port}"


def _cancelling() -> bool:
    """Whether this task is being cancelled (rather than a handler raising
    ``CancelledError`` on its own, which counts as a failed delivery)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _deliveries(headers: HeadersType) -> int:
    value = headers.get(DELIVERIES_HEADER)
    if isinstance(value, int) and not isinstance(value, bool):
        return max(value, 0)
    return 0


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


class _Subscription:
    def __init__(
        self,
        transport: RabbitTransport,
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
        """Stop consuming; unacknowledged messages go back to the queue.

        In-flight handlers are cancelled, then the channel is closed, which
        makes the broker requeue every message it delivered on it and that was
        not acknowledged."""
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


class RabbitTransport:
    """The :class:`~sagakit.ports.transport.Transport` port on RabbitMQ."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
        *,
        limit: int = MAX_MESSAGE_BYTES,
        prefix: str = "sagakit",
    ) -> None:
        """Use :meth:`connect`; this takes an open connection and a publish
        channel with publisher confirms."""
        self.limit = limit
        self.prefix = prefix
        self._connection = connection
        self._channel = channel
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
        prefix: str = "sagakit",
        connect_timeout: float = 10.0,
    ) -> RabbitTransport:
        """Connect (reconnecting automatically later) and open the publish channel."""
        try:
            connection = await aio_pika.connect_robust(url, timeout=connect_timeout)
        except _DRIVER_ERRORS as exc:
            raise TransportError(
                f"cannot connect to RabbitMQ at {_where(url)}: {_one_line(exc)}"
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
        """The broker's name for the logical ``queue``."""
        return f"{self.prefix}.{queue}" if self.prefix else queue

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("the RabbitMQ transport is closed")

    async def _declare(self, channel: AbstractChannel, name: str) -> AbstractQueue:
        with _driver_errors(f"declaring queue {name}"):
            declared = await channel.declare_queue(name, durable=True)
        self._declared.add(name)
        return declared

    async def _ensure(self, name: str) -> None:
        """Declare ``name`` on the publish channel, once per transport."""
        if name in self._declared:
            return
        async with self._declaring:  # one declare, not one per concurrent publish
            if name not in self._declared:
                await self._declare(self._channel, name)

    async def publish(self, queue: str, message: Envelope) -> None:
        body = encode(message, limit=self.limit)
        await self._publish(
            self.queue_name(queue), body, message_id=message.id, headers={}
        )

    async def publish_raw(self, queue: str, body: bytes) -> None:
        await self._publish(self.queue_name(queue), body, message_id=None, headers={})

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
            properties = Basic.Properties(
                content_type=CONTENT_TYPE,
                delivery_mode=PERSISTENT,
                message_id=message_id,
            )
            with _driver_errors(f"publishing to {name}"):
                channel = await self._channel.get_underlay_channel()
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
        with _driver_errors(f"publishing to {name}"):
            await self._channel.default_exchange.publish(amqp_message, routing_key=name)

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
        try:
            message = decode(incoming.body, limit=self.limit)
        except MalformedMessage as exc:
            await self._dead_letter(queue, incoming, exc.reason)
            return
        except Exception as exc:  # json.loads: RecursionError on deep nesting
            await self._dead_letter(queue, incoming, f"undecodable: {exc!r}")
            return
        try:
            await handler(message)
        except asyncio.CancelledError as exc:
            if _cancelling():
                raise
            failure: BaseException = exc  # raised by the handler itself
        except MalformedMessage as exc:  # the handler says: never valid, no retry
            await self._dead_letter(queue, incoming, exc.reason)
            return
        except Exception as exc:
            failure = exc
        else:
            await incoming.ack()
            return
        deliveries = _deliveries(incoming.headers) + 1
        if deliveries >= max_deliveries:
            await self._dead_letter(
                queue,
                incoming,
                f"handler failed {deliveries} times: "
                f"{type(failure).__name__}: {failure}",
            )
            return
        logger.info(
            "handler failed, message requeued",
            extra={"action": "redelivered", "queue": queue, "deliveries": deliveries},
        )
        await self._publish(
            self.queue_name(queue),
            incoming.body,
            message_id=incoming.message_id,
            headers={**incoming.headers, DELIVERIES_HEADER: deliveries},
        )
        await incoming.ack()

    async def _dead_letter(
        self, queue: str, incoming: AbstractIncomingMessage, reason: str
    ) -> None:
        reason = reason[:MAX_REASON_CHARS]
        logger.warning(
            "message dead-lettered",
            extra={"action": "dead_lettered", "queue": queue, "reason": reason},
        )
        headers: HeadersType = {
            **incoming.headers,
            REASON_HEADER: reason,
            DEAD_AT_HEADER: time.time(),
            QUEUE_HEADER: queue,
        }
        await self._publish(
            f"{self.queue_name(queue)}.dlq",
            incoming.body,
            message_id=incoming.message_id,
            headers=headers,
        )
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
                    dead_at = incoming.headers.get(DEAD_AT_HEADER)
                    found.append(
                        DeadLetter(
                            queue=queue,
                            body=incoming.body,
                            reason=_text(incoming.headers.get(REASON_HEADER)),
                            dead_at=float(dead_at)
                            if isinstance(dead_at, int | float)
                            else 0.0,
                        )
                    )
                if last is not None:  # put them all back, in place
                    await last.nack(multiple=True, requeue=True)
            finally:
                await channel.close()
        return found

    async def replay_dead_letters(self, queue: str, limit: int = 100) -> int:
        """Take dead letters one by one with ``basic.get``, republish each to
        ``queue`` (confirmed, without the dead-letter and delivery-count
        headers), then acknowledge it on the dead-letter queue. Messages taken
        but not yet moved go back to the dead-letter queue if this fails."""
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
                    headers = {
                        k: v for k, v in incoming.headers.items() if k not in _DEAD
                    }
                    await self._publish(
                        name,
                        incoming.body,
                        message_id=incoming.message_id,
                        headers=headers,
                    )
                    await incoming.ack()
                    moved += 1
            finally:
                await channel.close()
        if moved:
            logger.info(
                "dead letters replayed",
                extra={"action": "dead_letters_replayed", "queue": queue, "n": moved},
            )
        return moved

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
