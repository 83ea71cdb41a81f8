"""AMQP plumbing shared by the RabbitMQ and Celery-on-RabbitMQ transports.

:class:`AmqpTransport` holds a robust aio-pika connection and one publish
channel with publisher confirms and ``mandatory`` routing; each subscription
gets a channel of its own (its own QoS prefetch; closing it requeues what it
held). Queues are durable and declared on first use; each queue ``q`` has a
dead-letter queue ``q.dlq`` that the adapter itself feeds (the broker's DLX
would lose the reason). What a consumer receives is settled by
:mod:`~sagakit.adapters.transport.amqp_settle` (deliveries are counted in
the header ``x-sagakit-deliveries``: a failed message is republished,
confirmed, to the end of its queue with the count incremented, then
acknowledged; one given back because the broker refused that is counted by
:mod:`~sagakit.adapters.transport.amqp_given_back`); dead letters are read
and replayed by :mod:`~sagakit.adapters.transport.amqp_dead_letters`;
replies are routed to the process that sent their command by
:mod:`~sagakit.adapters.transport.amqp_replies`.

Subclasses say how a message is opened (``open_message``), sent again
(``resend``, ``resend_body``), sent to a reply exchange (``_publish_routed``)
and reported as a dead letter (``dead_letter_of``). Driver errors become
:class:`~sagakit.errors.TransportError` with the driver's exception as
``__cause__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, Self
from urllib.parse import urlsplit

from sagakit._extras import needs_extra
from sagakit.adapters.transport import amqp_dead_letters
from sagakit.adapters.transport.amqp_replies import (
    DEFAULT_REPLY_TTL,
    ReplyRoutes,
    valid_key,
)
from sagakit.adapters.transport.base import BaseTransport
from sagakit.adapters.transport.base import driver_errors as wrap_errors
from sagakit.adapters.transport.delivery import error_line
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
        AbstractExchange,
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
    from pamqp.commands import Basic
    from pamqp.exceptions import PAMQPException

from sagakit.adapters.transport.amqp_consumer import Incoming
from sagakit.adapters.transport.amqp_subscription import AmqpSubscription, subscribe
from sagakit.adapters.transport.amqp_writes import Writes

__all__ = [
    "DRIVER_ERRORS",
    "AbstractExchange",
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


class AmqpTransport(BaseTransport):
    """Connection, channels, queues and settling, for both AMQP adapters."""

    broker = "RabbitMQ"
    """How driver errors name the broker."""
    connect_name = "RabbitMQ"
    """How a failed connection names the broker."""
    log = logger
    default_prefix = ""
    """What queue names start with (``<prefix>.<queue>``) unless told."""
    driver_errors = DRIVER_ERRORS
    reply_ttl = DEFAULT_REPLY_TTL
    """Seconds a reply waits in its owner's queue before it moves to the
    shared reply queue (see :mod:`~sagakit.adapters.transport.amqp_replies`)."""

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
        self.routes = ReplyRoutes(self)
        self.writes = Writes()
        """What this transport writes in one turn of the loop, in one write."""

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

    def errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        """Driver errors inside become ``TransportError`` saying ``action`` failed."""
        return self._errors(action)

    @property
    def declared_queues(self) -> frozenset[str]:
        """Broker names of the queues this transport declared (tests, cleanup)."""
        return frozenset(self._declared)

    @property
    def declared_exchanges(self) -> frozenset[str]:
        """Names of the (reply) exchanges this transport declared."""
        return frozenset(self.routes.declared)

    def note_declared(self, name: str) -> None:
        self._declared.add(name)

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
        return await self.exists(name) or await self.exists(f"{name}.dlq")

    async def exists(self, name: str) -> bool:
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

    @property
    def connected(self) -> bool:
        """Whether the connection to the broker is up now (when it drops,
        it is reopened by itself, and so are the channels on it)."""
        return self._connection.connected.is_set()

    async def publish_ready(self) -> None:
        """Until the publish channel is open. After a reconnect aio-pika
        says the connection is ready before it has reopened the channels on
        it, and in between a robust channel still hands out its closed
        driver channel: a publish made then failed, though a moment later
        it would have gone out (a participant's reply, and the command it
        answers left unacknowledged on a consumer channel reopened first)."""
        ready = getattr(self._channel, "ready", None)  # a robust channel's
        if ready is not None:
            await ready()

    async def publish_channel(self) -> Any:
        """The driver's publish channel, open (see :meth:`publish_ready`)."""
        await self.publish_ready()
        return await self._channel.get_underlay_channel()

    async def consumer_channel(self, prefetch: int) -> AbstractChannel:
        """A new (robust) channel with ``prefetch`` as its QoS prefetch count."""
        with self._errors("opening a channel to consume"):
            channel = await self._connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def ensure(self, name: str) -> None:
        """Declare the queue ``name`` on the publish channel, once."""
        if name in self._declared:
            return
        async with self._declaring:  # one declare, not one per concurrent publish
            if name not in self._declared:
                await self._declare(self._channel, name)

    @contextlib.asynccontextmanager
    async def borrowed_channel(self, action: str) -> AsyncIterator[AbstractChannel]:
        """A short-lived channel (not restored when the broker closes it);
        driver errors inside become ``TransportError`` saying ``action``."""
        self._check_open()
        with self._errors(action):
            channel = await aio_pika.Channel(self._connection, publisher_confirms=False)
            try:
                yield channel
            finally:
                if not channel.is_closed:
                    await channel.close()

    @contextlib.asynccontextmanager
    async def borrowed_queue(
        self, name: str, action: str
    ) -> AsyncIterator[AbstractQueue]:
        """The queue ``name``, which exists (a passive declare: nothing is
        created), on a short-lived channel."""
        async with self.borrowed_channel(action) as channel:
            yield await channel.declare_queue(name, passive=True)

    # --- consuming ------------------------------------------------------------

    async def _subscribe(
        self, queue: str, handler: Handler, prefetch: int, max_deliveries: int
    ) -> AmqpSubscription:
        name = self.queue_name(queue)

        async def declare(channel: AbstractChannel) -> AbstractQueue:
            return await self._declare(channel, name)

        return await subscribe(
            self, queue, declare, handler, (prefetch, max_deliveries)
        )

    # --- replies to the process that sent the command -------------------------

    async def consume_own_replies(
        self,
        queue: str,
        key: str,
        handler: Handler,
        *,
        prefetch: int = 32,
        max_deliveries: int = 5,
    ) -> AmqpSubscription:
        """Consume the replies of the reply queue ``queue`` addressed to
        ``key`` (see :mod:`~sagakit.adapters.transport.amqp_replies`); one
        that fails goes on to ``queue`` itself (or its dead-letter queue)."""
        self._check_open()
        if not valid_key(key):
            raise TransportError(f"{key[:40]!r} cannot name a reply queue")
        if prefetch < 1 or max_deliveries < 1:
            raise TransportError("prefetch and max_deliveries must be >= 1")
        shared, ttl = self.queue_name(queue), self.reply_ttl

        async def declare(channel: AbstractChannel) -> AbstractQueue:
            return await self.routes.owner_queue(channel, shared, key, ttl)

        limits = (prefetch, max_deliveries)
        subscription = await subscribe(self, queue, declare, handler, limits)
        self._subscriptions.add(subscription)
        return subscription

    async def publish_reply(self, queue: str, key: str, body: bytes) -> None:
        """Publish a reply to ``key``'s queue of the reply queue ``queue``
        (to ``queue`` itself when nobody has such a queue, or ``key`` cannot
        name one)."""
        if not valid_key(key):
            await self.publish_raw(queue, body)
            return
        self._check_open()
        exchange = await self.routes.exchange(self._channel, self.queue_name(queue))
        await self._publish_routed(exchange, key, body)

    async def forward_replies(self, queue: str, key: str) -> int:
        """Move what waits in ``key``'s queue of ``queue`` to ``queue`` and
        delete that queue, unless someone consumes it; how many moved."""
        if not valid_key(key):
            return 0
        return await self.routes.forward(self.queue_name(queue), key)

    async def _publish_routed(
        self, exchange: AbstractExchange, key: str, body: bytes
    ) -> None:
        """Publish ``body`` (an encoded reply) to ``exchange`` under ``key``."""
        raise NotImplementedError

    # --- what each adapter says -----------------------------------------------

    async def publish_raw(self, queue: str, body: bytes) -> None:
        raise NotImplementedError

    def open_message(self, incoming: Incoming) -> Envelope | list[Part] | str:
        """The envelope ``incoming`` carries (the parts of a batch, where the
        adapter reads batches), or why it goes to the DLQ."""
        raise NotImplementedError

    async def resend_body(
        self, name: str, body: bytes, message_id: str | None, headers: HeadersType
    ) -> None:
        """Publish ``body`` (one envelope of a batch) to ``name``, confirmed."""
        raise NotImplementedError

    async def resend(self, name: str, incoming: Incoming, headers: HeadersType) -> None:
        """Publish ``incoming`` again to ``name``, confirmed, with ``headers``."""
        raise NotImplementedError

    def dead_letter_of(self, queue: str, incoming: Incoming) -> DeadLetter:
        raise NotImplementedError

    # --- dead letters ---------------------------------------------------------

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return await amqp_dead_letters.read(self, queue, limit)

    async def replay_dead_letters(self, queue: str, limit: int = 100) -> int:
        """Take dead letters one by one with ``basic.get``, republish each to
        ``queue`` (confirmed, without the dead-letter and delivery-count
        headers), then acknowledge it on the dead-letter queue. Messages taken
        but not yet moved go back to the dead-letter queue if this fails."""
        return await amqp_dead_letters.replay(self, queue, limit)

    async def _disconnect(self) -> None:
        self.writes.flush()
        with self._errors("closing the connection"):
            await self._connection.close()
