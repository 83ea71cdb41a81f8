"""A NATS JetStream transport on nats-py: durable streams, durable pull
consumers, explicit acks, counted redelivery, a dead-letter stream.

Layout on the server, for a logical queue ``q`` and the default prefix
(``q`` is written as one subject token: letters, digits and ``-`` as they
are, any other byte as ``_xx`` hex, see :func:`token`):

- stream ``sagakit_q`` on subject ``sagakit.q``: file storage, work-queue
  retention (a message is removed once acknowledged), a deduplication
  window (``dedupe_window``, 2 minutes by default) keyed by the
  ``Nats-Msg-Id`` header, which ``publish`` sets to the envelope id: the
  same envelope published twice within the window is stored once
  (``publish_raw`` sets none). Streams are created on first use, by
  ``publish`` as well as ``consume``, so messages sent before any consumer
  exists are kept.
- stream ``sagakit_q_dlq`` on subject ``sagakit.dlq.q``: the dead letters,
  with the original body and the headers ``x-sagakit-reason`` (JSON-escaped
  to stay on one line), ``x-sagakit-dead-at`` (Unix time),
  ``x-sagakit-queue``, ``x-sagakit-deliveries`` and ``x-sagakit-id`` (the
  envelope id, when the message had one). Nobody consumes it;
  :meth:`NatsTransport.dead_letters` reads it by sequence and
  :meth:`NatsTransport.replay_dead_letters` moves messages back.

**Consuming.** Every subscription of a queue fetches from one durable pull
consumer (``group``, ``sagakit`` by default) with explicit acks, so
subscriptions in any number of processes compete for the messages. Each
keeps one pull request open (for a second at most) for as many messages as
it had free slots (``prefetch``) when it asked; the server sends each
message as soon as it is there and the subscription starts handling it at
once, asking again only when the request is filled or expires. So a message
it holds is always being handled, and a trickle of messages costs no round
trip each; while a handler runs, its message is marked in progress every
``ack_wait / 3``, so a slow handler keeps it.

**Redelivery.** JetStream counts deliveries itself. A handler that raises
gets its message ``NAK``-ed (redelivered after ``retry_delay``, at once by
default) until its ``max_deliveries``-th delivery fails, which dead-letters
it; a message not acknowledged within ``ack_wait`` (its consumer died) comes
back too, and one delivered more than ``max_deliveries`` times is
dead-lettered without calling the handler (so one whose ``NAK`` or
dead-lettering failed, brought back by ``ack_wait``, counts too). The
server's own ``max_deliver`` is left unlimited: at that limit it would drop
the message from delivery without a reason. Dead-lettering publishes to the
DLQ stream (confirmed, with the original's stream sequence as
``Nats-Msg-Id``, so a crash before the ``TERM`` cannot dead-letter it twice)
and then terminates the message.
Cancelling a subscription gives back (``NAK``) the messages it was handling.

**Replaying** publishes each dead letter back to its queue (with
``Nats-Msg-Id`` ``replay-<dlq sequence>``: two concurrent replays store it
once) before deleting it from the DLQ stream.

**Durability.** ``publish`` returns once JetStream has stored the message
(its publish acknowledgement). Driver errors never escape: they become
:class:`~sagakit.errors.TransportError` with the driver's exception as
``__cause__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from sagakit._extras import needs_extra
from sagakit.adapters.transport.base import BaseTransport
from sagakit.adapters.transport.delivery import (
    DEAD_AT_HEADER,
    DELIVERIES_HEADER,
    QUEUE_HEADER,
    REASON_HEADER,
    dead_lettered,
    error_line,
    replayed,
)
from sagakit.adapters.transport.nats_consumer import (
    DRIVER_ERRORS,
    ID_HEADER,
    MSG_ID_HEADER,
    Subscription,
    driver_errors,
    header_text,
    header_value,
    logger,
    token,
)
from sagakit.errors import TransportError
from sagakit.messaging.envelope import MAX_MESSAGE_BYTES, Envelope, encode
from sagakit.ports.transport import DeadLetter, Handler

with needs_extra("NatsTransport needs nats-py", "nats"):
    import nats
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import api
    from nats.js.errors import NotFoundError, ServerError

_PREFIX = re.compile(r"[A-Za-z0-9-]+")


STORE_RACE = 10049
"""JetStream's "error creating store for stream". nats-server 2.9 removes an
account's stream directory when its last stream is deleted, and a stream
created at that moment (by another connection) fails with it; the next try
creates the directory again."""

CREATE_TRIES = 4
"""Tries of a stream's creation that fails with :data:`STORE_RACE`."""


async def add_stream(js: Any, config: Any, *, pause: float = 0.05) -> None:
    """Create the stream ``config`` describes (a stream of the same config
    that exists already is left as it is), again after ``pause``, then twice
    that, ... while the server fails with :data:`STORE_RACE`: at most
    :data:`CREATE_TRIES` tries."""
    for attempt in range(1, CREATE_TRIES + 1):
        try:
            await js.add_stream(config)
        except ServerError as exc:
            if exc.err_code != STORE_RACE or attempt == CREATE_TRIES:
                raise
            logger.info(
                "stream creation raced a deletion; trying again",
                extra={"action": "nats_stream_retry", "stream": config.name},
            )
            await asyncio.sleep(pause * attempt)
        else:
            return


class NatsTransport(BaseTransport):
    """The :class:`~sagakit.ports.transport.Transport` port on NATS JetStream."""

    name = "NATS"

    def __init__(
        self,
        client: Client,
        *,
        limit: int = MAX_MESSAGE_BYTES,
        prefix: str = "sagakit",
        group: str = "sagakit",
        ack_wait: float = 30.0,
        retry_delay: float = 0.0,
        dedupe_window: float = 120.0,
        replicas: int = 1,
    ) -> None:
        """Use :meth:`connect`; this takes a connected client.

        ``limit`` (bytes, default 256 KiB) refuses larger messages;
        ``prefix`` (letters, digits, ``-``) names streams and subjects;
        ``group`` names the durable consumer of each queue; ``ack_wait``
        (seconds) is how long a delivered message may go unacknowledged
        before the server delivers it again; ``retry_delay`` (seconds) is
        how long a failed message waits before it is delivered again;
        ``dedupe_window`` (seconds) is how long a ``Nats-Msg-Id`` is
        remembered; ``replicas`` is the streams' replication factor."""
        super().__init__()
        if not _PREFIX.fullmatch(prefix):
            raise TransportError("the NATS prefix may hold only letters, digits and -")
        if not _PREFIX.fullmatch(group):
            raise TransportError("the NATS group may hold only letters, digits and -")
        if ack_wait <= 0 or retry_delay < 0 or dedupe_window <= 0 or replicas < 1:
            raise TransportError(
                "need ack_wait > 0, retry_delay >= 0, dedupe_window > 0, replicas >= 1"
            )
        self.limit = limit
        self.prefix = prefix
        self.group = group
        self.ack_wait = ack_wait
        self.retry_delay = retry_delay
        self.dedupe_window = dedupe_window
        self.replicas = replicas
        self._client = client
        self._js = client.jetstream()
        self._streams: set[str] = set()
        self._ensuring = asyncio.Lock()

    @property
    def client(self) -> Client:
        """The nats-py connection this transport uses."""
        return self._client

    @classmethod
    async def connect(
        cls, url: str, *, connect_timeout: float = 10.0, **options: Any
    ) -> NatsTransport:
        """Connect to the server a ``nats://`` (or ``tls://``) URL names and
        check JetStream is enabled; ``options`` are those of the constructor,
        which the URL's query may give too
        (``nats://host:4222?ack_wait=5&prefix=shop``)."""
        url, given = url_options(url)
        options = {**given, **options}
        where = _where(url)

        failures: list[Exception] = []

        async def failed(exc: Exception) -> None:  # raised where it matters
            failures[:] = [exc]

        try:
            client = await nats.connect(
                url,
                connect_timeout=connect_timeout,
                allow_reconnect=False,
                max_reconnect_attempts=1,  # try twice, then raise
                reconnect_time_wait=0.1,
                error_cb=failed,
            )
        except (*DRIVER_ERRORS, ValueError) as exc:
            cause = failures[0] if failures else exc
            raise TransportError(
                f"cannot connect to NATS at {where}: {error_line(cause)}"
            ) from cause
        # once connected, reconnect for as long as it takes (nats-py reads
        # these options when the connection is lost)
        client.options.update(
            allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=2.0
        )
        try:
            transport = cls(client, **options)
            await transport._js.account_info()
        except BaseException as exc:
            with contextlib.suppress(*DRIVER_ERRORS):
                await client.close()
            if isinstance(exc, DRIVER_ERRORS):
                raise TransportError(
                    f"NATS at {where} has no JetStream (start it with -js): "
                    f"{error_line(exc)}"
                ) from exc
            raise
        return transport

    # --- names -----------------------------------------------------------------

    def stream_name(self, queue: str) -> str:
        """The stream holding ``queue``: ``<prefix>_<token>``."""
        return f"{self.prefix}_{token(queue)}"

    def subject(self, queue: str) -> str:
        return f"{self.prefix}.{token(queue)}"

    def dead_letter_stream(self, queue: str) -> str:
        return f"{self.stream_name(queue)}_dlq"

    def dead_letter_subject(self, queue: str) -> str:
        return f"{self.prefix}.dlq.{token(queue)}"

    async def _ensure(self, queue: str, *, dead: bool = False) -> str:
        """Create the stream of ``queue`` (or its DLQ), once; its name."""
        name = self.dead_letter_stream(queue) if dead else self.stream_name(queue)
        if name in self._streams:
            return name
        subject = self.dead_letter_subject(queue) if dead else self.subject(queue)
        config = api.StreamConfig(
            name=name,
            subjects=[subject],
            retention=api.RetentionPolicy.LIMITS
            if dead
            else api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            duplicate_window=self.dedupe_window,
            num_replicas=self.replicas,
        )
        async with self._ensuring:  # one create, not one per concurrent publish
            if name not in self._streams:
                with driver_errors(f"creating stream {name}"):
                    try:
                        await self._js.stream_info(name)
                    except NotFoundError:
                        await add_stream(self._js, config)
                self._streams.add(name)
        return name

    # --- publishing ------------------------------------------------------------

    async def publish(self, queue: str, message: Envelope) -> None:
        body = encode(message, limit=self.limit)
        await self._publish(queue, body, {MSG_ID_HEADER: message.id})

    async def publish_raw(self, queue: str, body: bytes) -> None:
        await self._publish(queue, body, None)

    async def _publish(
        self, queue: str, body: bytes, headers: dict[str, str] | None
    ) -> None:
        self._check_open()
        stream = await self._ensure(queue)
        with driver_errors(f"publishing to {stream}"):
            await self._js.publish(self.subject(queue), body, headers=headers)

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes]]
    ) -> list[Awaitable[Any]]:
        """See :class:`~sagakit.ports.transport.BatchPublisher`: the messages
        are written at once; each awaitable is its publish acknowledgement."""
        self._check_open()
        for queue in {queue for queue, _body in messages}:
            await self._ensure(queue)
        return [
            asyncio.ensure_future(self.publish_raw(queue, body))
            for queue, body in messages
        ]

    # --- consuming -------------------------------------------------------------

    async def _subscribe(
        self, queue: str, handler: Handler, prefetch: int, max_deliveries: int
    ) -> Subscription:
        stream = await self._ensure(queue)
        config = api.ConsumerConfig(
            durable_name=self.group,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            filter_subject=self.subject(queue),
        )
        with driver_errors(f"creating consumer {self.group} on {stream}"):
            try:
                await self._js.consumer_info(stream, self.group)
            except NotFoundError:
                await self._js.add_consumer(stream, config)
        subscription = Subscription(
            self,
            queue,
            stream,
            handler,
            prefetch=prefetch,
            max_deliveries=max_deliveries,
        )
        with driver_errors(f"subscribing to {stream}"):
            await subscription.listen()
        subscription.loop_task = asyncio.create_task(subscription.run())
        return subscription

    async def dead_letter(
        self, queue: str, msg: Msg, reason: str, deliveries: int
    ) -> None:
        """Store ``msg`` in the DLQ stream of ``queue`` with ``reason``."""
        reason = dead_lettered(logger, queue, reason)
        original = msg.headers or {}
        headers = {
            REASON_HEADER: header_text(reason),
            DEAD_AT_HEADER: repr(time.time()),
            QUEUE_HEADER: header_text(queue),
            DELIVERIES_HEADER: str(deliveries),
            MSG_ID_HEADER: f"dead-{msg.metadata.sequence.stream}",
        }
        if MSG_ID_HEADER in original:
            headers[ID_HEADER] = original[MSG_ID_HEADER]
        await self._ensure(queue, dead=True)
        await self._js.publish(
            self.dead_letter_subject(queue), msg.data, headers=headers
        )

    # --- dead letters ----------------------------------------------------------

    async def has_queue(self, queue: str) -> bool:
        """See :class:`~sagakit.ports.transport.QueueLookup` (stream lookups)."""
        self._check_open()
        for name in (self.stream_name(queue), self.dead_letter_stream(queue)):
            with driver_errors(f"looking up stream {name}"):
                try:
                    await self._js.stream_info(name)
                except NotFoundError:
                    continue
            return True
        return False

    async def _dead(self, queue: str, limit: int) -> list[tuple[int, Msg]]:
        """Up to ``limit`` messages of the DLQ stream, oldest first, with
        their sequences (none when the stream does not exist)."""
        stream = self.dead_letter_stream(queue)
        subject = self.dead_letter_subject(queue)
        found: list[tuple[int, Any]] = []
        seq = 1
        with driver_errors(f"reading {stream}"):
            while len(found) < limit:
                try:
                    raw = await self._js.get_msg(
                        stream, seq, subject=subject, next=True
                    )
                except NotFoundError:  # no stream, or no message from seq on
                    break
                found.append((raw.seq or seq, raw))
                seq = (raw.seq or seq) + 1
        return found

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        self._check_open()
        if limit < 1:
            return []
        letters = []
        for _seq, raw in await self._dead(queue, limit):
            headers = raw.headers or {}
            try:
                dead_at = float(headers.get(DEAD_AT_HEADER, "0"))
            except ValueError:
                dead_at = 0.0
            letters.append(
                DeadLetter(
                    queue=queue,
                    body=raw.data or b"",
                    reason=header_value(headers.get(REASON_HEADER)),
                    dead_at=dead_at,
                )
            )
        return letters

    async def replay_dead_letters(self, queue: str, limit: int = 100) -> int:
        """Publish up to ``limit`` dead letters (oldest first) back to
        ``queue``, each confirmed before it is deleted from the DLQ stream."""
        self._check_open()
        if limit < 1:
            return 0
        dead = await self._dead(queue, limit)
        if not dead:
            return 0
        stream = await self._ensure(queue)
        dlq = self.dead_letter_stream(queue)
        with driver_errors(f"replaying {dlq} to {stream}"):
            for seq, raw in dead:
                headers = {MSG_ID_HEADER: f"replay-{seq}"}
                await self._js.publish(
                    self.subject(queue), raw.data or b"", headers=headers
                )
                await self._js.delete_msg(dlq, seq)
        return replayed(logger, queue, len(dead))

    async def _disconnect(self) -> None:
        with driver_errors("closing the connection"):
            await self._client.close()


_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "prefix": str,
    "group": str,
    "ack_wait": float,
    "retry_delay": float,
    "dedupe_window": float,
    "replicas": int,
}


def url_options(url: str) -> tuple[str, dict[str, Any]]:
    """``url`` without its query, and the constructor options the query
    gives (an unknown name or a value that is not a number is a
    ``TransportError``)."""
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = _URL_OPTIONS.get(name)
        if kind is None:
            known = ", ".join(_URL_OPTIONS)
            raise TransportError(
                f"unknown NATS URL option {name[:40]!r} (known: {known})"
            )
        try:
            options[name] = kind(value)
        except ValueError:
            raise TransportError(
                f"the NATS URL option {name}={value[:20]!r} is not a number"
            ) from None
    return urlunsplit(parts._replace(query="")), options


def _where(url: str) -> str:
    """``host:port`` of a NATS URL, for messages (no credentials)."""
    parts = urlsplit(url)
    try:
        port = parts.port or 4222
    except ValueError:
        port = 4222
    return f"{parts.hostname or 'localhost'}:{port}"
