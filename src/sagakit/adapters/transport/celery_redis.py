"""Celery task messages over Redis, stored the way kombu's Redis transport does.

:class:`CeleryRedisTransport` sends and reads the same Celery task messages as
:class:`~sagakit.adapters.transport.celery.CeleryTransport` (protocol v2, JSON
only; the task-message rules are in :mod:`sagakit.adapters.transport.celery`),
so a Celery app with ``broker="redis://..."`` runs our commands and its
``app.send_task(name, args=[reply], queue=reply_to)`` reaches us.

The layout on the server (a list per queue, kombu's ``unacked`` hash and
index, ``q.dlq``) is described in :mod:`sagakit.adapters.transport.kombu_redis`.

**Consuming.** Each subscription runs one loop. A Lua script takes up to as
many messages as the subscription has free ``prefetch`` slots, popping them
and recording them in ``unacked`` and ``unacked_index`` in one step, so no
message is ever held only by the client. (kombu's ``BRPOP`` then ``HSET``
leaves a moment in which a crash loses a message; the script does not.) When
the lists are empty the loop waits with ``BLMOVE q q RIGHT RIGHT``, which
changes nothing but blocks until ``q`` has an entry; the priority lists are
looked at on each pass, at least every second. A message whose handler returns
is acknowledged (``ZREM`` and ``HDEL``); an item that is not a kombu message
with a delivery tag is dead-lettered without passing through ``unacked``.

**Redelivery** is counted in the header ``x-sagakit-deliveries``, as in the
RabbitMQ adapters: a failed message is pushed to the back of its queue with
the count incremented, in one ``MULTI``/``EXEC`` with its acknowledgement, and
after ``max_deliveries`` it is dead-lettered instead (also one transaction).
A message restored after a consumer stopped or died, or after settling it
failed (it stays in ``unacked``), counts as delivered once more (the restore
increments the header); one arriving with more than ``max_deliveries``
counted deliveries is dead-lettered without calling the handler.

**At least once.** ``cancel`` (and ``close``) stop the handlers and restore
their messages at once, to the end of the queue that is read first, as kombu
does at shutdown. Messages of a consumer that died stay in ``unacked``; every
``restore_interval`` each subscription restores the ones of its own queue
taken longer than ``visibility_timeout`` ago (kombu's ``restore_visible``,
under ``WATCH`` so that two restorers cannot both push one message), and
refreshes the time of the messages its handlers still hold, so a slow handler
keeps its message. A Celery worker's own sweep restores ours just as well
(without counting a delivery), and ours never touches entries of other
queues. Keep ``visibility_timeout`` equal to the Celery app's
``broker_transport_options["visibility_timeout"]`` (kombu and this adapter
default to an hour): a shorter one here lets our sweep take back a message a
Celery worker on the same queue is still running.

Like kombu's transport this needs one Redis server (6.2 or later, for
``BLMOVE``), not a Cluster.
``publish`` returns once Redis has the message; surviving a server crash takes
``appendonly yes``. Driver errors become :class:`~sagakit.errors.TransportError`
with the driver's exception as ``__cause__``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from bisect import bisect
from typing import Any
from urllib.parse import urlsplit

from sagakit.adapters.transport.base import BaseTransport
from sagakit.adapters.transport.celery_redis_consumer import Subscription, logger
from sagakit.adapters.transport.celery_wire import (
    JSON,
    build_task_message,
    message_app,
    read_dead_letter,
)
from sagakit.adapters.transport.delivery import (
    DELIVERIES_HEADER,
    counted,
    dead_letter_headers,
    replay_headers,
    replayed,
)
from sagakit.adapters.transport.kombu_redis import (
    PRIORITY_STEPS,
    SEP,
    TAKE,
    Message,
    open_item,
    priority,
    routed,
)
from sagakit.adapters.transport.redis_driver import (
    DRIVER_ERRORS,
    Pipeline,
    Redis,
    driver_errors,
    pooled_client,
    where,
)
from sagakit.errors import TransportError
from sagakit.messaging.envelope import (
    MAX_MESSAGE_BYTES,
    Envelope,
    MalformedMessage,
    decode,
)
from sagakit.ports.transport import DeadLetter, Handler

_SCHEMES = frozenset({"redis", "rediss", "unix"})


class CeleryRedisTransport(BaseTransport):
    """The :class:`~sagakit.ports.transport.Transport` port as Celery tasks on
    a Redis broker, stored as kombu stores them."""

    name = "Celery"

    def __init__(
        self,
        client: Redis,
        *,
        limit: int = MAX_MESSAGE_BYTES,
        prefix: str = "",
        visibility_timeout: float = 3600.0,
        restore_interval: float | None = None,
        unacked_key: str = "unacked",
        unacked_index_key: str = "unacked_index",
    ) -> None:
        """Use :meth:`connect`; this takes a client that answered ``PING``."""
        super().__init__()
        interval = (
            min(visibility_timeout / 4, 60.0)
            if restore_interval is None
            else restore_interval
        )
        if visibility_timeout <= 0 or not 0 < interval < visibility_timeout:
            raise TransportError("need 0 < restore_interval < visibility_timeout")
        self.limit = limit
        self.prefix = prefix
        self.visibility_timeout = visibility_timeout
        self.restore_interval = interval
        self.unacked_key = unacked_key
        self.unacked_index_key = unacked_index_key
        self._client = client
        self._take_script = client.register_script(TAKE)
        self._app = message_app()

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        connect_timeout: float = 10.0,
        max_connections: int = 128,
        pool_timeout: float = 30.0,
        **options: Any,
    ) -> CeleryRedisTransport:
        """Connect to the Redis broker of Celery's ``broker_url``; ``options``
        are the constructor's.

        ``visibility_timeout`` (seconds) and the ``unacked*`` key names are
        kombu's transport options of the same names: use the Celery app's
        values. ``restore_interval`` (default ``visibility_timeout / 4``, at
        most a minute) is how often each subscription restores messages of
        dead consumers and refreshes its own. Each subscription holds one of
        the ``max_connections`` while it waits for messages."""
        shown, scheme = where(url), urlsplit(url).scheme
        if scheme not in _SCHEMES:
            raise TransportError(
                f"CeleryRedisTransport speaks Redis only, not {scheme!r} broker URLs"
            )
        client = pooled_client(
            url,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
            connect_timeout=connect_timeout,
        )
        try:
            with driver_errors(f"connecting to the Celery broker at {shown}"):
                await client.ping()
            return cls(client, **options)
        except BaseException:
            with contextlib.suppress(*DRIVER_ERRORS):
                await client.aclose()
            raise

    # --- names and messages ---------------------------------------------------

    def queue_name(self, queue: str) -> str:
        """Celery's name (and the Redis list) of the logical ``queue``."""
        return f"{self.prefix}.{queue}" if self.prefix else queue

    def dead_letter_key(self, queue: str) -> str:
        """The list holding the dead letters of the logical ``queue``."""
        return f"{self.queue_name(queue)}.dlq"

    @staticmethod
    def list_keys(name: str) -> list[str]:
        """The lists of the Celery queue ``name``, in the order kombu reads them."""
        return [name, *(f"{name}{SEP}{step}" for step in PRIORITY_STEPS[1:])]

    @staticmethod
    def list_key(name: str, priority: int) -> str:
        """The list a message of ``priority`` goes to (kombu's ``_q_for_pri``)."""
        step = PRIORITY_STEPS[bisect(PRIORITY_STEPS, priority) - 1]
        return f"{name}{SEP}{step}" if step else name

    def kombu_message(
        self,
        name: str,
        body: bytes,
        headers: dict[str, Any],
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
    ) -> Message:
        """The message kombu's Redis transport stores for ``body`` on ``name``."""
        properties: dict[str, Any] = {}
        if correlation_id:
            properties["correlation_id"] = correlation_id
        if reply_to:
            properties["reply_to"] = reply_to
        properties |= {
            "delivery_mode": 2,  # persistent, as Celery sends it
            "delivery_info": {"exchange": "", "routing_key": name},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        }
        return {
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": "utf-8",
            "content-type": JSON,
            "headers": headers,
            "properties": properties,
        }

    def task_message(self, name: str, message: Envelope) -> Message:
        """The Celery task message (protocol v2, JSON) carrying ``message``."""
        built = build_task_message(self._app, message, limit=self.limit)
        return self.kombu_message(
            name,
            built.body,
            built.headers,
            correlation_id=built.correlation_id,
            reply_to=built.reply_to,
        )

    @staticmethod
    def retagged(name: str, message: Message, headers: dict[str, Any]) -> Message:
        """``message`` sent again to ``name``: other headers, a new delivery tag."""
        properties = {
            **message["properties"],
            "delivery_info": {"exchange": "", "routing_key": name},
            "delivery_tag": str(uuid.uuid4()),
        }
        return {**message, "headers": headers, "properties": properties}

    # --- the port -------------------------------------------------------------

    async def publish(self, queue: str, message: Envelope) -> None:
        self._check_open()
        name = self.queue_name(queue)
        await self._push(name, self.task_message(name, message))

    async def publish_raw(self, queue: str, body: bytes) -> None:
        self._check_open()
        name = self.queue_name(queue)
        try:
            message = decode(body, limit=self.limit)
        except MalformedMessage:  # not an envelope: sent as it is, to be dead-lettered
            await self._push(name, self.kombu_message(name, body, {}))
        else:
            await self._push(name, self.task_message(name, message))

    async def _push(self, name: str, message: Message) -> None:
        with driver_errors(f"publishing to {name}"):
            await self._client.lpush(
                self.list_key(name, priority(message)), json.dumps(message)
            )

    async def _subscribe(
        self, queue: str, handler: Handler, prefetch: int, max_deliveries: int
    ) -> Subscription:
        subscription = Subscription(
            self, queue, handler, prefetch=prefetch, max_deliveries=max_deliveries
        )
        subscription.loop_task = asyncio.create_task(subscription.run())
        return subscription

    async def ack(self, tag: str, key: str = "", again: Message | None = None) -> None:
        """Acknowledge ``tag`` and, in the same transaction, push ``again`` to
        the list ``key`` (a redelivery or a dead letter)."""
        async with self._client.pipeline(transaction=True) as pipe:
            if again is not None:
                pipe.lpush(key, json.dumps(again))
            pipe.zrem(self.unacked_index_key, tag)
            pipe.hdel(self.unacked_key, tag)
            await pipe.execute()

    async def dead_letter(
        self, queue: str, tag: str, message: Message, reason: str
    ) -> None:
        headers = dead_letter_headers(
            logger, queue, message.get("headers") or {}, reason
        )
        dead = {**message, "headers": headers}
        await self.ack(tag, self.dead_letter_key(queue), dead)

    async def restore(self, tag: str) -> None:
        """Put the message of ``tag`` back from ``unacked`` where it was taken
        from, counted as delivered once more (kombu's ``restore_by_tag``)."""

        async def restore(pipe: Pipeline) -> None:
            raw: Any = await pipe.hget(self.unacked_key, tag)
            route = routed(raw)
            message = json.loads(raw)[0] if route else None
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.zrem(self.unacked_index_key, tag)
            pipe.hdel(self.unacked_key, tag)
            if not isinstance(message, dict) or route is None:
                return  # acknowledged meanwhile, or nothing kombu could restore
            headers = message.get("headers")
            if not isinstance(headers, dict):
                headers = message["headers"] = {}
            headers["redelivered"] = True
            headers[DELIVERIES_HEADER] = counted(headers) + 1
            with contextlib.suppress(AttributeError, KeyError, TypeError):
                message["properties"]["delivery_info"]["redelivered"] = True
            name = route[1]
            pipe.rpush(self.list_key(name, priority(message)), json.dumps(message))

        await self._client.transaction(restore, self.unacked_key)

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        self._check_open()
        if limit < 1:
            return []
        key = self.dead_letter_key(queue)
        with driver_errors(f"reading {key}"):
            items: list[Any] = await self._client.lrange(key, -limit, -1)
        found = []
        for item in reversed(items):  # the oldest is at the tail
            opened = open_item(item, len(item))
            if isinstance(opened, str):
                found.append(
                    DeadLetter(queue=queue, body=item, reason=opened, dead_at=0.0)
                )
            else:
                found.append(
                    read_dead_letter(
                        queue, opened.body, opened.content_type, opened.headers
                    )
                )
        return found

    async def replay_dead_letters(self, queue: str, limit: int = 100) -> int:
        """In one ``MULTI``/``EXEC`` under ``WATCH``, push up to ``limit`` dead
        letters (oldest first) back to their queue, as they came but without
        the ``x-sagakit-*`` headers and with a new delivery tag, and trim them
        from the dead-letter list."""
        self._check_open()
        if limit < 1:
            return 0
        name = self.queue_name(queue)
        key = self.dead_letter_key(queue)

        async def move(pipe: Pipeline) -> int:
            items: list[Any] = await pipe.lrange(key, -limit, -1)
            pipe.multi()  # type: ignore[no-untyped-call]
            for item in reversed(items):
                opened = open_item(item, len(item))
                if isinstance(opened, str):
                    again = self.kombu_message(name, item, {})
                else:
                    headers = replay_headers(opened.headers)
                    again = self.retagged(name, opened.message, headers)
                pipe.lpush(self.list_key(name, priority(again)), json.dumps(again))
            if items:
                pipe.ltrim(key, 0, -len(items) - 1)
            return len(items)

        with driver_errors(f"replaying {key}"):
            moved: int = await self._client.transaction(
                move, key, value_from_callable=True
            )
        return replayed(logger, queue, moved)

    async def _disconnect(self) -> None:
        with driver_errors("closing the connection"):
            await self._client.aclose()
