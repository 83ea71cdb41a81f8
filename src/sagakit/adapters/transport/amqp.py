"""AMQP plumbing shared by the RabbitMQ and Celery-on-RabbitMQ transports.

:class:`AmqpTransport` holds a robust aio-pika connection and one publish
channel with publisher confirms and ``mandatory`` routing; each subscription
gets a channel of its own (its own QoS prefetch; closing it requeues what it
held). Queues are durable and declared on first use; each queue ``q`` has a
dead-letter queue ``q.dlq`` that the adapter itself feeds (the broker's DLX
would lose the reason). Deliveries are counted in the header
``x-sagakit-deliveries``: a failed message is republished, confirmed, to the
end of its queue with the count incremented, then acknowledged. Dead letters
are read with ``basic.get`` and put back in place with one ``nack(multiple,
requeue)``; replaying republishes each, confirmed, before acknowledging it.

Subclasses say how a message is opened (``_open``), sent again (``_resend``)
and reported as a dead letter (``_dead_letter_of``). Driver errors become
:class:`~sagakit.errors.TransportError` with the driver's exception as
``__cause__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Self
from urllib.parse import urlsplit

from sagakit._extras import needs_extra
from sagakit.adapters.transport.base import BaseSubscription, BaseTransport
from sagakit.adapters.transport.base import driver_errors as wrap_errors
from sagakit.adapters.transport.delivery import (
    ACK,
    DELIVERIES_HEADER,
    counted,
    dead_letter_headers,
    deliver,
    error_line,
    replay_headers,
    replayed,
    requeued,
)
from sagakit.errors import TransportError
from sagakit.messaging.batch import Part
from sagakit.messaging.envelope import MAX_MESSAGE_BYTES, Envelope
from sagakit.ports.transport import DeadLetter, Handler

with needs_extra(
    "RabbitTransport and CeleryTransport need aio-pika", "rabbitmq", "celery"
):
    import aio_pika
    from aio_pika.abc import (
        AbstractChannel,
        AbstractIncomingMessage,
        AbstractQueue,
        AbstractRobustConnection,
        HeadersType,
    )
    from aio_pika.exceptions import (
        AMQPError,
        ChannelInvalidStateError,
        ChannelNotFoundEntity,
    )
    from aiormq.abc import DeliveredMessage
    from pamqp.commands import Basic
    from pamqp.exceptions import PAMQPException

from sagakit.adapters.transport.amqp_consumer import (
    Acks,
    Delivered,
    Incoming,
    RawConsumer,
)

__all__ = [
    "DRIVER_ERRORS",
    "AbstractIncomingMessage",
    "AmqpSubscription",
    "AmqpTransport",
    "Basic",
    "HeadersType",
    "Incoming",
    "aio_pika",
    "where",
]

logger = logging.getLogger(__name__)

DRIVER_ERRORS = (AMQPError, ChannelInvalidStateError, PAMQPException, OSError)
"""What aio-pika/aiormq raise; ``OSError`` covers sockets and ``TimeoutError``."""


_QUEUE_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@#,/+ "
)
MAX_QUEUE_NAME = 255 - len(".dlq")
"""AMQP names are short strings of at most 255 bytes; ``.dlq`` is added."""


def check_queue_name(name: str) -> None:
    """A TransportError unless AMQP (as aio-pika sends it) carries ``name``
    and its ``.dlq`` twin: at most :data:`MAX_QUEUE_NAME` characters among
    ASCII letters, digits and ``-_.:@#,/+`` and space."""
    if len(name) > MAX_QUEUE_NAME:
        raise TransportError(
            f"queue name {name[:40]!r}... is {len(name)} characters long: "
            f"AMQP takes at most {MAX_QUEUE_NAME} (with '.dlq' added)"
        )
    odd = sorted(set(name) - _QUEUE_CHARS)
    if odd:
        raise TransportError(
            f"queue name {name!r} has characters AMQP does not allow "
            f"({''.join(odd)!r}): use ASCII letters, digits and -_.:@#,/+"
        )


def where(url: str) -> str:
    """``host:port`` of an AMQP URL, for messages."""
    parts = urlsplit(url)
    default = 5671 if parts.scheme == "amqps" else 5672
    try:
        port = parts.port or default
    except ValueError:
        port = default
    return f"{parts.hostname or 'localhost'}:{port}"


class AmqpSubscription(BaseSubscription):
    """A consumer on a channel of its own."""

    def __init__(
        self,
        transport: AmqpTransport,
        channel: AbstractChannel,
        queue: AbstractQueue,
        acks: Acks,
    ) -> None:
        super().__init__(transport)
        self._amqp = transport
        self.channel = channel
        self.queue = queue
        self.acks = acks
        self.consumer: RawConsumer | None = None
        self.inflight: set[asyncio.Task[object]] = set()

    async def _stop(self) -> None:
        """In-flight handlers are cancelled, what they finished is
        acknowledged, then the channel is closed, which makes the broker
        requeue every message it delivered on it and that was not
        acknowledged."""
        errors = self._amqp._errors
        try:
            if self.consumer is not None and not self.channel.is_closed:
                with errors(f"cancelling the consumer of {self.queue.name}"):
                    await self.consumer.cancel()
        finally:
            current = asyncio.current_task()
            tasks = [t for t in self.inflight if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.acks.stop()
            if not self.channel.is_closed:
                with errors(f"closing the channel of {self.queue.name}"):
                    await self.channel.close()


class AmqpTransport(BaseTransport):
    """Connection, channels, queues and settling, for both AMQP adapters."""

    broker = "RabbitMQ"
    """How driver errors name the broker."""
    connect_name = "RabbitMQ"
    """How a failed connection names the broker."""
    log = logger
    default_prefix = ""
    """What queue names start with (``<prefix>.<queue>``) unless told."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
        *,
        limit: int = MAX_MESSAGE_BYTES,
        prefix: str | None = None,
    ) -> None:
        """Use :meth:`connect`; this takes an open connection and a publish
        channel with publisher confirms."""
        super().__init__()
        self.limit = limit
        self.prefix = self.default_prefix if prefix is None else prefix
        self._connection = connection
        self._channel = channel
        self._declared: set[str] = set()
        self._names: dict[str, str] = {}  # logical queue -> checked broker name
        self._declaring = asyncio.Lock()

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        limit: int = MAX_MESSAGE_BYTES,
        prefix: str | None = None,
        connect_timeout: float = 10.0,
    ) -> Self:
        """Connect (reconnecting automatically later) and open the publish
        channel; ``prefix`` defaults to :attr:`default_prefix`."""
        given, url = url, cls._amqp_url(url)
        try:
            connection = await aio_pika.connect_robust(url, timeout=connect_timeout)
        except DRIVER_ERRORS as exc:
            raise TransportError(
                f"cannot connect to {cls.connect_name} at {where(url)}: "
                f"{error_line(exc)}"
            ) from exc
        try:
            with cls._errors("opening the publish channel"):
                channel = await connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
        except TransportError:
            with contextlib.suppress(*DRIVER_ERRORS):
                await connection.close()
            raise
        transport = cls(connection, channel, limit=limit, prefix=prefix)
        transport._configure(given)
        return transport

    @classmethod
    def _amqp_url(cls, url: str) -> str:
        """aio-pika's URL for ``url``."""
        return url

    def _configure(self, url: str) -> None:
        """Take this adapter's own options from the URL it was given."""

    @classmethod
    @contextlib.contextmanager
    def _errors(cls, action: str) -> Iterator[None]:
        with wrap_errors(cls.broker, action, DRIVER_ERRORS):
            yield

    @property
    def declared_queues(self) -> frozenset[str]:
        """Broker names of the queues this transport declared (tests, cleanup)."""
        return frozenset(self._declared)

    def queue_name(self, queue: str) -> str:
        """The broker's name for the logical ``queue``; a TransportError if
        AMQP cannot carry it (with its ``.dlq`` twin)."""
        name = self._names.get(queue)
        if name is None:  # once per queue: the publish path only looks it up
            name = f"{self.prefix}.{queue}" if self.prefix else queue
            check_queue_name(name)
            self._names[queue] = name
        return name

    async def has_queue(self, queue: str) -> bool:
        """See :class:`~sagakit.ports.transport.QueueLookup` (passive declares)."""
        self._check_open()
        name = self.queue_name(queue)
        return await self._exists(name) or await self._exists(f"{name}.dlq")

    async def _exists(self, name: str) -> bool:
        """A passive declare of ``name``, on a channel of its own (a queue
        that is not there closes the channel)."""
        with self._errors(f"looking up queue {name}"):
            channel = await self._connection.channel(publisher_confirms=False)
            try:
                await channel.declare_queue(name, passive=True)
            except ChannelNotFoundEntity:
                return False
            finally:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await channel.close()
        return True

    async def _declare(self, channel: AbstractChannel, name: str) -> AbstractQueue:
        with self._errors(f"declaring queue {name}"):
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

    # --- consuming ------------------------------------------------------------

    async def _subscribe(
        self, queue: str, handler: Handler, prefetch: int, max_deliveries: int
    ) -> AmqpSubscription:
        name = self.queue_name(queue)
        await self._ensure(f"{name}.dlq")
        with self._errors(f"opening a channel to consume {name}"):
            channel = await self._connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=prefetch)
        acks = Acks(self.log, queue, DRIVER_ERRORS)
        subscription = AmqpSubscription(
            self, channel, await self._declare(channel, name), acks
        )
        inflight = subscription.inflight

        async def on_message(message: DeliveredMessage) -> None:
            # aiormq runs each delivery in a task of its own
            task = asyncio.current_task()
            if task is not None:
                inflight.add(task)
            delivered = Delivered(message)
            acks.received(delivered)
            try:
                await self._deliver(queue, delivered, handler, max_deliveries)
            except asyncio.CancelledError:
                raise  # not acknowledged: requeued when the channel closes
            except Exception:  # a driver error settling it: it stays unacked
                self.log.warning(
                    "message left unacknowledged",
                    exc_info=True,
                    extra={"action": "settle_failed", "queue": queue},
                )
            else:
                acks.settled(delivered)
            finally:
                if task is not None:
                    inflight.discard(task)

        consumer = RawConsumer(channel, name, on_message)
        try:
            with self._errors(f"consuming {name}"):
                await consumer.start()
                subscription.consumer = consumer
        except TransportError:
            await subscription.cancel()
            raise
        return subscription

    async def _deliver(
        self,
        queue: str,
        incoming: Incoming,
        handler: Handler,
        max_deliveries: int,
    ) -> None:
        """Handle ``incoming``; returns once it may be acknowledged (handled,
        or sent again or to the dead-letter queue, confirmed)."""
        headers = incoming.headers
        opened = self._open(incoming)
        deliveries = counted(headers) + 1
        if isinstance(opened, list):
            await self._deliver_parts(
                queue, incoming, opened, handler, (deliveries, max_deliveries)
            )
            return
        verdict = await deliver(handler, opened, deliveries, max_deliveries)
        if verdict is ACK:
            return
        name = self.queue_name(queue)
        if verdict.reason is None:
            requeued(self.log, queue, verdict.deliveries)
            again = {**headers, DELIVERIES_HEADER: verdict.deliveries}
            await self._resend(name, incoming, again)
        else:
            dead = dead_letter_headers(self.log, queue, headers, verdict.reason)
            await self._resend(f"{name}.dlq", incoming, dead)

    async def _deliver_parts(
        self,
        queue: str,
        incoming: Incoming,
        parts: list[Part],
        handler: Handler,
        counts: tuple[int, int],
    ) -> None:
        """Handle each envelope of a batch on its own (concurrently, as if
        each had come alone); one that failed is sent again alone, counted,
        or dead-lettered alone with its reason, before the batch is settled."""
        deliveries, max_deliveries = counts  # this delivery's, and the most
        verdicts = await asyncio.gather(
            *(deliver(handler, p.opened, deliveries, max_deliveries) for p in parts)
        )
        name = self.queue_name(queue)
        headers = incoming.headers
        for part, verdict in zip(parts, verdicts, strict=True):
            if verdict is ACK:
                continue
            message_id = part.opened.id if isinstance(part.opened, Envelope) else None
            if verdict.reason is None:
                requeued(self.log, queue, verdict.deliveries)
                again = {**headers, DELIVERIES_HEADER: verdict.deliveries}
                await self._resend_body(name, part.body(), message_id, again)
            else:
                dead = dead_letter_headers(self.log, queue, headers, verdict.reason)
                await self._resend_body(f"{name}.dlq", part.body(), message_id, dead)

    def _open(self, incoming: Incoming) -> Envelope | list[Part] | str:
        """The envelope ``incoming`` carries (the parts of a batch, where the
        adapter reads batches), or why it goes to the DLQ."""
        raise NotImplementedError

    async def _resend_body(
        self, name: str, body: bytes, message_id: str | None, headers: HeadersType
    ) -> None:
        """Publish ``body`` (one envelope of a batch) to ``name``, confirmed."""
        raise NotImplementedError

    async def _resend(
        self, name: str, incoming: Incoming, headers: HeadersType
    ) -> None:
        """Publish ``incoming`` again to ``name``, confirmed, with ``headers``."""
        raise NotImplementedError

    def _dead_letter_of(self, queue: str, incoming: Incoming) -> DeadLetter:
        raise NotImplementedError

    # --- dead letters ---------------------------------------------------------

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        self._check_open()
        name = f"{self.queue_name(queue)}.dlq"
        found: list[DeadLetter] = []
        if not await self._exists(name):  # read-only: never declared here
            return found
        with self._errors(f"reading {name}"):
            channel = await self._connection.channel(publisher_confirms=False)
            try:
                dlq = await channel.declare_queue(name, passive=True)
                last: AbstractIncomingMessage | None = None
                while len(found) < limit:
                    incoming = await dlq.get(no_ack=False, fail=False)
                    if incoming is None:
                        break
                    last = incoming
                    found.append(self._dead_letter_of(queue, incoming))
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
        if not await self._exists(dlq_name):
            return replayed(self.log, queue, moved)
        with self._errors(f"replaying {dlq_name}"):
            channel = await self._connection.channel(publisher_confirms=False)
            try:
                dlq = await channel.declare_queue(dlq_name, passive=True)
                while moved < limit:
                    incoming = await dlq.get(no_ack=False, fail=False)
                    if incoming is None:
                        break
                    await self._resend(name, incoming, replay_headers(incoming.headers))
                    await incoming.ack()
                    moved += 1
            finally:
                await channel.close()
        return replayed(self.log, queue, moved)

    async def _disconnect(self) -> None:
        with self._errors("closing the connection"):
            await self._connection.close()
