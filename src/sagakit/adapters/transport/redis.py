"""A Redis transport on Streams: consumer groups, counted redelivery, a DLQ stream.

Layout on the server, for a logical queue ``q`` and the default prefix:

- ``sagakit:q``: a stream with one entry per message. The field ``body`` holds
  the encoded envelope and ``id`` the envelope id (absent for
  ``publish_raw``). The consumer group (``sagakit`` by default) is created on
  first use, by ``publish`` as well as ``consume``, at id ``0`` and with
  ``MKSTREAM``, so messages sent before any consumer exists are kept.
- ``sagakit:q:dlq``: the dead-letter stream, fields ``body``, ``id`` (when
  known), ``reason``, ``dead_at`` (Unix time), ``queue`` and ``deliveries``.
  Nobody consumes it; :meth:`RedisTransport.dead_letters` reads it with
  ``XRANGE`` and :meth:`RedisTransport.replay_dead_letters` moves entries back.

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
back-off), and deliveries cut short by ``cancel`` or a crash count too.

While a handler runs, the loop renews its entries every ``claim_interval``
(``XCLAIM ... JUSTID``, which resets the idle time without counting a
delivery), so a slow handler keeps its message; ``claim_interval`` must be
shorter than ``claim_idle``. If the loop stalls for longer than ``claim_idle``
another consumer may take the entry over: delivery is at least once.

Dead-lettering is one ``MULTI``/``EXEC`` of ``XADD`` to the DLQ, ``XACK`` and
``XDEL``, so a crash cannot leave a message both dead and pending. That needs
both keys on one server: Redis Cluster is not supported.

**Durability.** ``publish`` returns once the server has appended the entry;
surviving a server crash takes ``appendonly yes`` on the server. Driver errors
never escape: they become :class:`~sagakit.errors.TransportError` with the
driver's exception as ``__cause__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
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
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.exceptions import RedisError, ResponseError
    from redis.typing import EncodableT, FieldT
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "RedisTransport needs redis: pip install 'sagakit[redis]'"
    ) from exc

logger = logging.getLogger(__name__)

BODY_FIELD = b"body"
ID_FIELD = b"id"
REASON_FIELD = b"reason"
DEAD_AT_FIELD = b"dead_at"
QUEUE_FIELD = b"queue"
DELIVERIES_FIELD = b"deliveries"
MAX_REASON_CHARS = 2000
END_OF_SCAN = b"0-0"
MAX_BLOCK = 1.0  # seconds a read blocks at most, far below socket timeouts

_DRIVER_ERRORS = (RedisError, OSError)
"""What redis-py raises; ``OSError`` covers sockets and ``TimeoutError``."""

Fields = dict[bytes, bytes]


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or (
            isinstance(seen, OSError) and seen.errno == errno.ECONNREFUSED
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return "connection refused" in str(exc).lower()


def _one_line(exc: BaseException) -> str:
    if _refused(exc):
        return "connection refused"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def _driver_errors(action: str) -> Iterator[None]:
    try:
        yield
    except _DRIVER_ERRORS as exc:
        raise TransportError(f"Redis: {action} failed: {_one_line(exc)}") from exc


def _where(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    return f"{parts.hostname or 'localhost'}:{port}"


def _cancelling() -> bool:
    """Whether this task is being cancelled (rather than a handler raising
    ``CancelledError`` on its own, which counts as a failed delivery)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _outgoing(fields: Fields) -> dict[FieldT, EncodableT]:
    return {name: value for name, value in fields.items()}


class _Subscription:
    """One consumer of the group: a read/claim loop and its handler tasks."""

    def __init__(
        self,
        transport: RedisTransport,
        queue: str,
        consumer: str,
        handler: Handler,
        *,
        prefetch: int,
        max_deliveries: int,
    ) -> None:
        self._transport = transport
        self._queue = queue
        self._key = transport.stream_key(queue)
        self.consumer = consumer
        self._handler = handler
        self._prefetch = prefetch
        self._max_deliveries = max_deliveries
        self._inflight: dict[bytes, asyncio.Task[None]] = {}
        self._slot_freed = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._cancelled = False

    async def cancel(self) -> None:
        """Stop reading; unacknowledged entries stay pending for others.

        The loop and the in-flight handlers are cancelled; their entries are
        claimed by another consumer once idle for ``claim_idle``. The consumer
        is then removed from the group if it owns no pending entries."""
        if self._cancelled:
            return
        self._cancelled = True
        self._transport._subscriptions.discard(self)
        current = asyncio.current_task()
        tasks = [t for t in (self._loop_task, *self._inflight.values()) if t]
        tasks = [t for t in tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._forget()

    async def _forget(self) -> None:
        """``XGROUP DELCONSUMER`` when it would drop nothing (best effort)."""
        client = self._transport._client
        group = self._transport.group
        try:
            pending = await client.xpending_range(
                self._key, group, "-", "+", 1, self.consumer
            )
            if not pending:
                await client.xgroup_delconsumer(self._key, group, self.consumer)
        except _DRIVER_ERRORS:
            logger.debug(
                "consumer left in the group",
                exc_info=True,
                extra={"action": "forget_failed", "queue": self._queue},
            )

    # --- the loop -------------------------------------------------------------

    async def _run(self) -> None:
        transport = self._transport
        clock = asyncio.get_running_loop().time
        interval = transport.claim_interval
        next_claim = clock()
        cursor = END_OF_SCAN
        while not self._cancelled:  # also stops if a cancellation got lost
            try:
                if clock() >= next_claim:
                    await self._renew()
                    cursor = await self._reclaim(cursor)
                    next_claim = clock() + (interval if cursor == END_OF_SCAN else 0)
                wait = max(next_claim - clock(), 0.001)
                free = self._prefetch - len(self._inflight)
                if free <= 0:
                    self._slot_freed.clear()
                    # not wait_for: on 3.11 it can swallow a cancellation
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._slot_freed.wait()
                    continue
                # a blocked read stays under the client's socket timeout
                # (5 s by default in redis-py 8), which would fail it
                block = min(wait, MAX_BLOCK)
                await self._read(free, block_ms=max(1, round(block * 1000)))
            except ResponseError as exc:
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    await self._pause(exc)
                    continue
                transport._groups.discard(self._key)  # the stream was deleted
                with contextlib.suppress(TransportError):
                    await transport._ensure(self._key)
            except _DRIVER_ERRORS as exc:
                await self._pause(exc)

    async def _pause(self, exc: BaseException) -> None:
        error = _one_line(exc)
        extra = {"action": "consume_failed", "queue": self._queue, "error": error}
        logger.warning("consumer loop failed, retrying", extra=extra)
        await asyncio.sleep(self._transport.claim_interval)

    async def _read(self, count: int, *, block_ms: int) -> None:
        response: Any = await self._transport._client.xreadgroup(
            self._transport.group,
            self.consumer,
            {self._key: ">"},
            count=count,
            block=block_ms,
        )
        for _stream, entries in response or []:
            for entry_id, fields in entries:
                self._start(entry_id, fields, deliveries=1)

    async def _renew(self) -> None:
        """Reset the idle time of the entries being handled."""
        if not self._inflight:
            return
        await self._transport._client.xclaim(
            self._key,
            self._transport.group,
            self.consumer,
            0,
            list(self._inflight),
            justid=True,
        )

    async def _reclaim(self, cursor: bytes) -> bytes:
        """Claim idle pending entries (one ``XAUTOCLAIM`` page); the next cursor."""
        free = self._prefetch - len(self._inflight)
        if free <= 0:
            return cursor
        client = self._transport._client
        group = self._transport.group
        response: Any = await client.xautoclaim(
            self._key,
            group,
            self.consumer,
            self._transport.claim_idle_ms,
            start_id=cursor,
            count=free,
        )
        claimed = [entry for entry in response[1] if entry and entry[1] is not None]
        if claimed:
            async with client.pipeline(transaction=False) as pipe:
                for entry_id, _fields in claimed:
                    pipe.xpending_range(
                        self._key, group, entry_id, entry_id, 1, self.consumer
                    )
                found: list[Any] = await pipe.execute()
            for (entry_id, fields), pending in zip(claimed, found, strict=True):
                # not pending: acknowledged meanwhile; in flight: ours already
                if pending and entry_id not in self._inflight:
                    self._start(
                        entry_id, fields, deliveries=int(pending[0]["times_delivered"])
                    )
        next_cursor: bytes = response[0]
        return next_cursor

    def _start(self, entry_id: bytes, fields: Fields, *, deliveries: int) -> None:
        task = asyncio.create_task(self._settle(entry_id, fields, deliveries))
        self._inflight[entry_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(entry_id, None)
            self._slot_freed.set()

        task.add_done_callback(done)

    # --- one entry ------------------------------------------------------------

    async def _settle(self, entry_id: bytes, fields: Fields, deliveries: int) -> None:
        try:
            await self._deliver(entry_id, fields, deliveries)
        except asyncio.CancelledError:
            raise  # left pending: claimed by another consumer later
        except Exception as exc:  # a driver error settling it: it stays pending
            error = _one_line(exc)
            extra = {"action": "settle_failed", "queue": self._queue, "error": error}
            logger.warning("message left unacknowledged", extra=extra)

    def _open(self, fields: Fields, deliveries: int) -> Envelope | str:
        """The envelope, or why the entry goes to the DLQ without handling."""
        body = fields.get(BODY_FIELD)
        if body is None:
            return "entry has no body field"
        try:
            message = decode(body, limit=self._transport.limit)
        except MalformedMessage as exc:
            return exc.reason
        except Exception as exc:  # json.loads: RecursionError on deep nesting
            return f"undecodable: {exc!r}"
        if deliveries > self._max_deliveries:  # its consumers kept dying
            return f"not acknowledged after {deliveries - 1} deliveries"
        return message

    async def _deliver(self, entry_id: bytes, fields: Fields, deliveries: int) -> None:
        transport = self._transport
        message = self._open(fields, deliveries)
        if isinstance(message, str):
            await transport._dead_letter(
                self._queue, entry_id, fields, message, deliveries
            )
            return
        try:
            await self._handler(message)
        except asyncio.CancelledError as exc:
            if _cancelling():
                raise
            failure: BaseException = exc  # raised by the handler itself
        except MalformedMessage as exc:  # the handler says: never valid
            await transport._dead_letter(
                self._queue, entry_id, fields, exc.reason, deliveries
            )
            return
        except Exception as exc:
            failure = exc
        else:
            await transport._ack(self._key, entry_id)
            return
        if deliveries < self._max_deliveries:
            logger.info(
                "handler failed, message left pending",
                extra={"action": "redelivered", "queue": self._queue},
            )
            return
        reason = (
            f"handler failed {deliveries} times: {type(failure).__name__}: {failure}"
        )
        await transport._dead_letter(self._queue, entry_id, fields, reason, deliveries)


class RedisTransport:
    """The :class:`~sagakit.ports.transport.Transport` port on Redis Streams."""

    def __init__(
        self,
        client: Redis,
        *,
        limit: int = MAX_MESSAGE_BYTES,
        prefix: str = "sagakit",
        group: str = "sagakit",
        consumer: str | None = None,
        claim_idle: float = 30.0,
        claim_interval: float | None = None,
        delete_acked: bool = True,
    ) -> None:
        """Use :meth:`connect`; this takes a client that answered ``PING``."""
        interval = claim_idle / 4 if claim_interval is None else claim_interval
        if claim_idle <= 0 or not 0 < interval < claim_idle:
            raise TransportError("need 0 < claim_interval < claim_idle")
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
        self._groups: set[str] = set()
        self._ensuring = asyncio.Lock()
        self._subscriptions: set[_Subscription] = set()
        self._consumers = 0
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        limit: int = MAX_MESSAGE_BYTES,
        prefix: str = "sagakit",
        group: str = "sagakit",
        consumer: str | None = None,
        claim_idle: float = 30.0,
        claim_interval: float | None = None,
        delete_acked: bool = True,
        connect_timeout: float = 10.0,
        max_connections: int = 128,
        pool_timeout: float = 30.0,
    ) -> RedisTransport:
        """Connect and check the server answers.

        ``claim_idle`` (seconds) is how long a pending entry waits before
        another consumer may take it: the redelivery delay after a failure,
        and how long a dead consumer's messages stay stuck. ``claim_interval``
        (default ``claim_idle / 4``) is how often each subscription claims
        and renews.

        Commands share a pool of ``max_connections``; a command finding none
        free waits up to ``pool_timeout`` seconds for one. Each subscription
        holds a connection while it waits for entries (up to
        ``claim_interval``), so keep the pool well above the number of
        subscriptions."""
        try:
            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=pool_timeout,
                socket_connect_timeout=connect_timeout,
            )
        except ValueError as exc:
            raise TransportError(f"invalid Redis URL for {_where(url)}") from exc
        client = Redis.from_pool(pool)
        try:
            await client.ping()
        except _DRIVER_ERRORS as exc:
            with contextlib.suppress(*_DRIVER_ERRORS):
                await client.aclose()
            raise TransportError(
                f"cannot connect to Redis at {_where(url)}: {_one_line(exc)}"
            ) from exc
        return cls(
            client,
            limit=limit,
            prefix=prefix,
            group=group,
            consumer=consumer,
            claim_idle=claim_idle,
            claim_interval=claim_interval,
            delete_acked=delete_acked,
        )

    def stream_key(self, queue: str) -> str:
        """The stream holding the logical ``queue``."""
        return f"{self.prefix}:{queue}" if self.prefix else queue

    def dead_letter_key(self, queue: str) -> str:
        """The stream holding the dead letters of ``queue``."""
        return f"{self.stream_key(queue)}:dlq"

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("the Redis transport is closed")

    async def _ensure(self, key: str) -> None:
        """Create the consumer group of ``key`` (and the stream), once."""
        if key in self._groups:
            return
        async with self._ensuring:  # one create, not one per concurrent publish
            if key in self._groups:
                return
            try:
                await self._client.xgroup_create(key, self.group, id="0", mkstream=True)
            except _DRIVER_ERRORS as exc:
                if not str(exc).startswith("BUSYGROUP"):  # else it exists already
                    raise TransportError(
                        f"Redis: creating group {self.group} on {key} failed: "
                        f"{_one_line(exc)}"
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
        with _driver_errors(f"publishing to {key}"):
            await self._client.xadd(key, _outgoing(fields))

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
        await self._ensure(self.stream_key(queue))
        self._consumers += 1
        subscription = _Subscription(
            self,
            queue,
            f"{self.consumer}-{self._consumers}",
            handler,
            prefetch=prefetch,
            max_deliveries=max_deliveries,
        )
        subscription._loop_task = asyncio.create_task(subscription._run())
        self._subscriptions.add(subscription)
        return subscription

    async def _ack(self, key: str, entry_id: bytes) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.xack(key, self.group, entry_id)
            if self.delete_acked:
                pipe.xdel(key, entry_id)
            await pipe.execute()

    async def _dead_letter(
        self,
        queue: str,
        entry_id: bytes,
        fields: Fields,
        reason: str,
        deliveries: int,
    ) -> None:
        reason = reason[:MAX_REASON_CHARS]
        extra = {"action": "dead_lettered", "queue": queue, "reason": reason}
        logger.warning("message dead-lettered", extra=extra)
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
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letter_key(queue), _outgoing(dead))
            pipe.xack(key, self.group, entry_id)
            if self.delete_acked:
                pipe.xdel(key, entry_id)
            await pipe.execute()

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        self._check_open()
        if limit < 1:
            return []
        key = self.dead_letter_key(queue)
        with _driver_errors(f"reading {key}"):
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
        with _driver_errors(f"replaying {dlq}"):
            entries: Any = await self._client.xrange(dlq, "-", "+", count=limit)
            if not entries:
                return 0
            async with self._client.pipeline(transaction=True) as pipe:
                for _entry_id, fields in entries:
                    again: Fields = {BODY_FIELD: fields.get(BODY_FIELD, b"")}
                    if ID_FIELD in fields:
                        again[ID_FIELD] = fields[ID_FIELD]
                    pipe.xadd(key, _outgoing(again))
                pipe.xdel(dlq, *[entry_id for entry_id, _fields in entries])
                await pipe.execute()
        logger.info(
            "dead letters replayed",
            extra={
                "action": "dead_letters_replayed",
                "queue": queue,
                "n": len(entries),
            },
        )
        return len(entries)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for subscription in list(self._subscriptions):
                await subscription.cancel()
        finally:
            with _driver_errors("closing the connection"):
                await self._client.aclose()
