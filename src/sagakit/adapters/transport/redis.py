"""A Redis transport on Streams: consumer groups, counted redelivery, a DLQ stream.

Layout on the server, for a logical queue ``q`` and the default prefix:

- ``sagakit:{q}``: a stream with one entry per message. The field ``body``
  holds the encoded envelope and ``id`` the envelope id (absent for
  ``publish_raw``). The consumer group (``sagakit`` by default) is created on
  first use, by ``publish`` as well as ``consume``, at id ``0`` and with
  ``MKSTREAM``, so messages sent before any consumer exists are kept.
- ``sagakit:{q}:dlq``: the dead-letter stream, fields ``body``, ``id`` (when
  known), ``reason``, ``dead_at`` (Unix time), ``queue`` and ``deliveries``.
  Nobody consumes it; :meth:`RedisTransport.dead_letters` reads it with
  ``XRANGE`` and :meth:`RedisTransport.replay_dead_letters` moves entries back.

The braces make the queue name the keys' hash tag: on Redis Cluster a
queue's stream and its DLQ stream are in one slot (so on one node), while
different queues spread over the slots. The layout is the same on a single
server.

**Consuming.** Each subscription is one consumer of the group, named
``<consumer>-<n>`` (``consumer`` defaults to host, pid and a random suffix),
with one loop that reads new entries with ``XREADGROUP ... BLOCK`` and starts
one task per entry, at most ``prefetch`` at a time. It reads only as many
entries as it has free slots, so an entry it owns is always being handled.
When the handler returns, the entry is acknowledged with ``XACK`` and, unless
``delete_acked=False``, removed with ``XDEL`` in the same round trip. Deleting
keeps the stream as short as its backlog; turn it off when other consumer
groups (with other ``group`` names) read the same streams, since ``XDEL``
removes the entry for every group.

**Redelivery.** A handler that raises leaves its entry pending. Every
``claim_interval`` the loop runs ``XAUTOCLAIM`` for entries idle longer than
``claim_idle``: those of failed handlers, of cancelled subscriptions and of
consumers that died. Redis counts deliveries itself (``XREADGROUP`` and each
claim add one); the loop reads the count of each claimed entry with
``XPENDING``. A handler failing on delivery ``max_deliveries`` dead-letters the
entry at once; a claimed entry already delivered more than ``max_deliveries``
times (its consumers kept dying) is dead-lettered without calling the handler.
So a failed message comes back after about ``claim_idle`` (a natural
back-off), and deliveries cut short by ``cancel`` or a crash count too, as
does one whose acknowledgement or dead-lettering failed (left pending, it is
claimed again: the AMQP adapters need
:mod:`~sagakit.adapters.transport.amqp_given_back` for that).

While a handler runs, the loop renews its entries every ``claim_interval``
(``XCLAIM ... JUSTID``, which resets the idle time without counting a
delivery), so a slow handler keeps its message; ``claim_interval`` must be
shorter than ``claim_idle``. If the loop stalls for longer than ``claim_idle``
another consumer may take the entry over: delivery is at least once.

Dead-lettering is one ``MULTI``/``EXEC`` of ``XADD`` to the DLQ, ``XACK`` and
``XDEL``, so a crash cannot leave a message both dead and pending; replaying
is one ``MULTI``/``EXEC`` of ``XADD`` to the stream and ``XDEL`` from the DLQ.
Every command and pipeline touches the keys of one queue only: one slot.

**Redis Cluster.** ``connect(url, cluster=True)``, or a
``redis+cluster://host:port`` URL (``rediss+cluster://`` for TLS), connects
redis-py's ``RedisCluster`` through that one node; it finds the others itself
and follows ``MOVED`` and ``ASK`` redirections. A queue's two keys share a
slot, so a resharding moves them together, and each transaction runs on the
node owning the slot (this needs a redis-py with transactions on cluster
pipelines). The prefix may not hold ``{`` or ``}``, and a queue name may not
be empty or start with ``}``: either would leave the two keys without a
common hash tag. ``max_connections`` bounds the commands in flight, and so
the connections to each node; a command finding none free waits up to
``pool_timeout`` seconds, as on one server. redis-py asks a node for the key
of each ``XREADGROUP`` (``COMMAND GETKEYS``), so a read costs extra round
trips. Replication is asynchronous: a failover can lose the failed master's
last writes (a publish, or an acknowledgement whose message then comes back).

**Durability.** ``publish`` returns once the server has appended the entry;
surviving a server crash takes ``appendonly yes`` on the server. Driver errors
never escape: they become :class:`~sagakit.errors.TransportError` with the
driver's exception as ``__cause__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypedDict, Unpack

from sagakit.adapters.transport.base import BaseTransport
from sagakit.adapters.transport.delivery import dead_lettered, error_line, replayed
from sagakit.adapters.transport.redis_consumer import (
    BODY_FIELD,
    DEAD_AT_FIELD,
    DELIVERIES_FIELD,
    ID_FIELD,
    QUEUE_FIELD,
    REASON_FIELD,
    Fields,
    Subscription,
    logger,
    outgoing,
)
from sagakit.adapters.transport.redis_driver import (
    CLUSTER_SCHEMES,
    DRIVER_ERRORS,
    UNREACHABLE,
    Redis,
    RedisCluster,
    RedisClusterException,
    RedisConnectionError,
    driver_errors,
    pooled_client,
    where,
)
from sagakit.errors import TransportError
from sagakit.messaging.envelope import (
    MAX_MESSAGE_BYTES,
    Envelope,
    encode,
)
from sagakit.ports.transport import DeadLetter, Handler


def _cluster_client(
    url: str, max_connections: int, connect_timeout: float
) -> RedisCluster:
    shown = f"Redis Cluster URL for {where(url)}"
    try:
        client = RedisCluster.from_url(
            url, max_connections=max_connections, socket_connect_timeout=connect_timeout
        )
    except ValueError as exc:
        raise TransportError(f"invalid {shown}") from exc
    except RedisClusterException as exc:  # a database or a socket path
        raise TransportError(f"invalid {shown}: {error_line(exc)}") from exc
    try:
        client.pipeline(transaction=True)  # an older redis-py refuses
    except RedisClusterException as exc:
        raise TransportError(
            "RedisTransport on Redis Cluster needs a redis-py with transactions "
            "on cluster pipelines: pip install -U redis"
        ) from exc
    return client


class RedisOptions(TypedDict, total=False):
    """The options :class:`RedisTransport` and its :meth:`~RedisTransport.connect`
    share (defaults and meaning: ``connect``'s docstring)."""

    limit: int
    prefix: str
    group: str
    consumer: str | None
    claim_idle: float
    claim_interval: float | None
    delete_acked: bool


class RedisTransport(BaseTransport):
    """The :class:`~sagakit.ports.transport.Transport` port on Redis Streams."""

    name = "Redis"

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        limit: int = MAX_MESSAGE_BYTES,
        prefix: str = "sagakit",
        group: str = "sagakit",
        consumer: str | None = None,
        claim_idle: float = 30.0,
        claim_interval: float | None = None,
        delete_acked: bool = True,
    ) -> None:
        """Use :meth:`connect`; this takes a client that answered ``PING``.

        A ``RedisCluster`` client given here fails a command at once when the
        node has no free connection; :meth:`connect` makes commands wait."""
        super().__init__()
        interval = claim_idle / 4 if claim_interval is None else claim_interval
        if claim_idle <= 0 or not 0 < interval < claim_idle:
            raise TransportError("need 0 < claim_interval < claim_idle")
        self.cluster = isinstance(client, RedisCluster)
        if self.cluster and ("{" in prefix or "}" in prefix):
            raise TransportError("on Redis Cluster the prefix may not hold { or }")
        self.limit = limit
        self.prefix = prefix
        self.group = group
        self.consumer = consumer or (
            f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        self.claim_idle_ms = max(1, round(claim_idle * 1000))
        self.claim_interval = interval
        self.delete_acked = delete_acked
        self._client = client
        self._turns: asyncio.Semaphore | None = None  # see _turn
        self._pool_timeout = 0.0
        self._groups: set[str] = set()
        self._ensuring = asyncio.Lock()
        self._consumers = 0

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        connect_timeout: float = 10.0,
        max_connections: int = 128,
        pool_timeout: float = 30.0,
        cluster: bool = False,
        **options: Unpack[RedisOptions],
    ) -> RedisTransport:
        """Connect and check the server answers.

        ``limit`` (bytes, default 256 KiB) refuses larger messages;
        ``prefix`` and ``group`` (both ``sagakit``) name the keys and the
        consumer group; ``consumer`` names this consumer (``host-pid-random``
        by default); ``delete_acked`` (default True) deletes entries once
        acknowledged.

        ``claim_idle`` (seconds) is how long a pending entry waits before
        another consumer may take it: the redelivery delay after a failure,
        and how long a dead consumer's messages stay stuck. ``claim_interval``
        (default ``claim_idle / 4``) is how often each subscription claims
        and renews.

        Commands share a pool of ``max_connections``; a command finding none
        free waits up to ``pool_timeout`` seconds for one. Each subscription
        holds a connection while it waits for entries (up to
        ``claim_interval``), so keep the pool well above the number of
        subscriptions.

        ``cluster=True``, or a ``redis+cluster://`` or ``rediss+cluster://``
        URL, connects to Redis Cluster through the node the URL names."""
        scheme, _, rest = url.partition("://")
        if scheme.lower() in CLUSTER_SCHEMES:
            url, cluster = f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}", True
        what = "Redis Cluster" if cluster else "Redis"
        client: Redis | RedisCluster
        if cluster:
            client = _cluster_client(url, max_connections, connect_timeout)
        else:
            client = pooled_client(
                url,
                max_connections=max_connections,
                pool_timeout=pool_timeout,
                connect_timeout=connect_timeout,
            )
        # before any I/O: a refused option leaks no connection
        transport = cls(client, **options)
        if cluster:  # redis-py fails at once when a node has no free connection
            transport._turns = asyncio.Semaphore(max_connections)
            transport._pool_timeout = pool_timeout
        try:
            await client.ping()
        except DRIVER_ERRORS as exc:
            with contextlib.suppress(*DRIVER_ERRORS):
                await client.aclose()
            reason = error_line(exc).rpartition(UNREACHABLE)[2]
            raise TransportError(
                f"cannot connect to {what} at {where(url)}: {reason}"
            ) from exc
        return transport

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """Around each command or pipeline: on a cluster, wait up to
        ``pool_timeout`` while ``max_connections`` commands are in flight."""
        if self._turns is None:
            yield
            return
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._turns.acquire()
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None
        try:
            yield
        finally:
            self._turns.release()

    def stream_key(self, queue: str) -> str:
        """The stream holding the logical ``queue``: ``<prefix>:{<queue>}``."""
        if self.cluster and (not queue or queue.startswith("}")):
            raise TransportError(
                f"queue name {queue!r} cannot be used on Redis Cluster: "
                "it may not be empty or start with }"
            )
        return f"{self.prefix}:{{{queue}}}" if self.prefix else f"{{{queue}}}"

    def dead_letter_key(self, queue: str) -> str:
        """The stream holding the dead letters of ``queue`` (the same hash tag)."""
        return f"{self.stream_key(queue)}:dlq"

    async def _ensure(self, key: str) -> None:
        """Create the consumer group of ``key`` (and the stream), once."""
        if key in self._groups:
            return
        async with self._ensuring:  # one create, not one per concurrent publish
            if key in self._groups:
                return
            try:
                async with self._turn():
                    await self._client.xgroup_create(
                        key, self.group, id="0", mkstream=True
                    )
            except DRIVER_ERRORS as exc:
                if not str(exc).startswith("BUSYGROUP"):  # else it exists already
                    raise TransportError(
                        f"Redis: creating group {self.group} on {key} failed: "
                        f"{error_line(exc)}"
                    ) from exc
            self._groups.add(key)

    async def publish(self, queue: str, message: Envelope) -> None:
        body = encode(message, limit=self.limit)
        await self._publish(queue, {BODY_FIELD: body, ID_FIELD: message.id.encode()})

    async def publish_raw(self, queue: str, body: bytes) -> None:
        await self._publish(queue, {BODY_FIELD: body})

    async def _publish(self, queue: str, fields: Fields) -> None:
        self._check_open()
        key = self.stream_key(queue)
        await self._ensure(key)
        with driver_errors(f"publishing to {key}"):
            async with self._turn():
                await self._client.xadd(key, outgoing(fields))

    async def _subscribe(
        self, queue: str, handler: Handler, prefetch: int, max_deliveries: int
    ) -> Subscription:
        await self._ensure(self.stream_key(queue))
        self._consumers += 1
        subscription = Subscription(
            self,
            queue,
            f"{self.consumer}-{self._consumers}",
            handler,
            prefetch=prefetch,
            max_deliveries=max_deliveries,
        )
        subscription.loop_task = asyncio.create_task(subscription.run())
        return subscription

    async def ack(self, key: str, entry_id: bytes) -> None:
        async with self._turn(), self._client.pipeline(transaction=False) as pipe:
            pipe.xack(key, self.group, entry_id)
            if self.delete_acked:
                pipe.xdel(key, entry_id)
            await pipe.execute()

    async def dead_letter(
        self,
        queue: str,
        entry_id: bytes,
        fields: Fields,
        reason: str,
        deliveries: int,
    ) -> None:
        reason = dead_lettered(logger, queue, reason)
        dead: Fields = {
            BODY_FIELD: fields.get(BODY_FIELD, b""),
            REASON_FIELD: reason.encode(),
            DEAD_AT_FIELD: repr(time.time()).encode(),
            QUEUE_FIELD: queue.encode(),
            DELIVERIES_FIELD: str(deliveries).encode(),
        }
        if ID_FIELD in fields:
            dead[ID_FIELD] = fields[ID_FIELD]
        key = self.stream_key(queue)
        async with self._turn(), self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letter_key(queue), outgoing(dead))
            pipe.xack(key, self.group, entry_id)
            if self.delete_acked:
                pipe.xdel(key, entry_id)
            await pipe.execute()

    async def has_queue(self, queue: str) -> bool:
        """See :class:`~sagakit.ports.transport.QueueLookup` (``EXISTS``)."""
        self._check_open()
        keys = (self.stream_key(queue), self.dead_letter_key(queue))
        with driver_errors(f"looking up {keys[0]}"):
            async with self._turn():
                found: Any = await self._client.exists(*keys)
        return bool(found)

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        self._check_open()
        if limit < 1:
            return []
        key = self.dead_letter_key(queue)
        with driver_errors(f"reading {key}"):
            async with self._turn():
                entries: Any = await self._client.xrange(key, "-", "+", count=limit)
        return [
            DeadLetter(
                queue=queue,
                body=fields.get(BODY_FIELD, b""),
                reason=fields.get(REASON_FIELD, b"").decode("utf-8", "replace"),
                dead_at=float(fields.get(DEAD_AT_FIELD, b"0")),
            )
            for _entry_id, fields in entries
        ]

    async def replay_dead_letters(self, queue: str, limit: int = 100) -> int:
        """Read up to ``limit`` entries of the DLQ stream (oldest first), then in
        one ``MULTI``/``EXEC`` append each one's ``body`` (and ``id``) to the
        queue's stream as a new entry (a fresh delivery count) and ``XDEL`` it
        from the DLQ. Two concurrent replays may both append an entry."""
        self._check_open()
        if limit < 1:
            return 0
        key = self.stream_key(queue)
        dlq = self.dead_letter_key(queue)
        await self._ensure(key)
        with driver_errors(f"replaying {dlq}"):
            async with self._turn():
                entries: Any = await self._client.xrange(dlq, "-", "+", count=limit)
            if not entries:
                return 0
            async with self._turn(), self._client.pipeline(transaction=True) as pipe:
                for _entry_id, fields in entries:
                    again: Fields = {BODY_FIELD: fields.get(BODY_FIELD, b"")}
                    if ID_FIELD in fields:
                        again[ID_FIELD] = fields[ID_FIELD]
                    pipe.xadd(key, outgoing(again))
                pipe.xdel(dlq, *[entry_id for entry_id, _fields in entries])
                await pipe.execute()
        return replayed(logger, queue, len(entries))

    async def _disconnect(self) -> None:
        with driver_errors("closing the connection"):
            await self._client.aclose()
