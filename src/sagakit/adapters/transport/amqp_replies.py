"""Replies routed to the process that drives their saga (AMQP transports).

For a reply queue whose broker name is ``R``:

- ``R`` is the shared reply queue, as without routing: every orchestrator
  serving on it consumes it, and any of them can apply any reply;
- ``R.any`` is a fanout exchange bound to ``R``;
- ``R.owners`` is a direct exchange whose alternate exchange is ``R.any``: a
  reply published there under a routing key no queue is bound to goes to
  ``R``;
- ``R.owner.<key>`` is the queue of one driving process (``key`` comes from
  its worker id), bound to ``R.owners`` under ``key``: durable, with a
  message TTL of :attr:`~sagakit.adapters.transport.amqp.AmqpTransport.reply_ttl`
  seconds and ``R.any`` as its dead-letter exchange.

An orchestrator serving with routing consumes ``R`` and its own queue, and
its commands carry its key (the envelope header ``x-sagakit-reply-key``); a
participant on an AMQP transport publishes the reply to ``R.owners`` under
that key (:func:`valid_key` keys only; otherwise, and on other transports,
to ``R``). So a reply reaches the process that sent the command, whose
instance of the saga is in memory.

Nothing waiting in an owner's queue is lost when its owner goes away, which
is why the queue is neither exclusive nor auto-deleted (both would drop the
replies in it with the connection). A reply older than ``reply_ttl`` in an
owner's queue (its owner crashed, or is too busy to take it) moves to ``R``
by dead-lettering, where any process applies it. An owner that stops
cleanly, and a process that finds an owner of its own host dead,
:meth:`ReplyRoutes.forward` the queue: each waiting reply is republished to
``R`` (confirmed) and acknowledged, then the queue is deleted if it is empty
and nobody consumes it; later replies for that key go to ``R`` through
``R.any``. A queue whose owner crashed on another host stays behind, empty
once its replies expired into ``R`` (delete it by hand, leave it: it holds
nothing, or have the broker delete it by an expiry policy on the owners'
queues: ``docs/how-to/remote-steps.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any, Protocol

from sagakit._extras import needs_extra
from sagakit.adapters.transport.amqp_consumer import Incoming

with needs_extra(
    "RabbitTransport and CeleryTransport need aio-pika", "rabbitmq", "celery"
):
    import aio_pika
    from aio_pika.abc import (
        AbstractChannel,
        AbstractExchange,
        AbstractQueue,
        HeadersType,
    )

__all__ = [
    "DEFAULT_REPLY_TTL",
    "FORWARD_ATTEMPTS",
    "FORWARD_LIMIT",
    "ReplyHost",
    "ReplyRoutes",
    "any_exchange",
    "owner_queue",
    "owners_exchange",
    "valid_key",
]

DEFAULT_REPLY_TTL = 15.0
"""Seconds a reply waits in its owner's queue before it moves to the shared one."""
FORWARD_LIMIT = 10_000
"""Replies moved at most by one pass of :meth:`ReplyRoutes.forward`."""
FORWARD_ATTEMPTS = 3
"""Passes of :meth:`ReplyRoutes.forward` at most (see there)."""
_KEY = re.compile(r"[A-Za-z0-9_.:@-]{1,120}")


def valid_key(key: object) -> bool:
    """Whether ``key`` may name an owner's queue (and be a routing key)."""
    return isinstance(key, str) and _KEY.fullmatch(key) is not None


def owners_exchange(shared: str) -> str:
    return f"{shared}.owners"


def any_exchange(shared: str) -> str:
    return f"{shared}.any"


def owner_queue(shared: str, key: str) -> str:
    return f"{shared}.owner.{key}"


class ReplyHost(Protocol):
    """What :class:`ReplyRoutes` needs of its transport."""

    @property
    def log(self) -> logging.Logger: ...

    def errors(self, action: str) -> contextlib.AbstractContextManager[None]: ...

    def note_declared(self, name: str) -> None:
        """Count ``name`` among the queues this transport declared."""

    def borrowed_channel(
        self, action: str
    ) -> contextlib.AbstractAsyncContextManager[AbstractChannel]:
        """A channel of its own (not restored if the broker closes it)."""

    async def resend(
        self, name: str, incoming: Incoming, headers: HeadersType
    ) -> None: ...


class ReplyRoutes:
    """The reply exchanges and owner queues of one transport."""

    def __init__(self, host: ReplyHost) -> None:
        self._host = host
        self._exchanges: dict[str, AbstractExchange] = {}
        self._declaring = asyncio.Lock()
        self.declared: set[str] = set()
        """Names of the exchanges declared (tests, cleanup)."""

    async def exchange(self, channel: AbstractChannel, shared: str) -> AbstractExchange:
        """``R.owners`` of the shared reply queue ``shared`` (with ``R.any``,
        ``R`` and their binding), declared on ``channel`` once."""
        found = self._exchanges.get(shared)
        if found is not None:
            return found
        async with self._declaring:
            if shared not in self._exchanges:
                self._exchanges[shared] = await self._declare(channel, shared)
        return self._exchanges[shared]

    async def _declare(self, channel: AbstractChannel, shared: str) -> AbstractExchange:
        with self._host.errors(f"declaring the reply exchanges of {shared}"):
            fallback = await channel.declare_exchange(
                any_exchange(shared), aio_pika.ExchangeType.FANOUT, durable=True
            )
            queue = await channel.declare_queue(shared, durable=True)
            await queue.bind(fallback, routing_key="")
            owners = await channel.declare_exchange(
                owners_exchange(shared),
                aio_pika.ExchangeType.DIRECT,
                durable=True,
                arguments={"alternate-exchange": any_exchange(shared)},
            )
        self._host.note_declared(shared)
        self.declared.update((any_exchange(shared), owners_exchange(shared)))
        return owners

    async def owner_queue(
        self, channel: AbstractChannel, shared: str, key: str, ttl: float
    ) -> AbstractQueue:
        """``key``'s queue of ``shared``, declared and bound on ``channel`` (a
        consumer's: after a reconnect it declares and binds them again)."""
        owners = await self._declare(channel, shared)  # on this channel too
        name = owner_queue(shared, key)
        with self._host.errors(f"declaring {name}"):
            queue = await channel.declare_queue(
                name, durable=True, arguments=owner_arguments(shared, ttl)
            )
            await queue.bind(owners, routing_key=key)
        self._host.note_declared(name)
        return queue

    async def forward(self, shared: str, key: str) -> int:
        """Move the replies waiting in ``key``'s queue of ``shared`` to
        ``shared`` and delete the queue, unless someone consumes it (its
        owner lives); returns how many moved. Each is republished, confirmed,
        before it is acknowledged: a failure leaves it in one place or both,
        never in neither. A reply that comes while the queue is emptied
        makes the broker refuse the delete: the queue is emptied again (a
        few times; then what is left expires into ``shared``)."""
        name = owner_queue(shared, key)
        moved = 0
        for _ in range(FORWARD_ATTEMPTS):
            drained = await self._drain(shared, name)
            if drained is None:
                break  # gone, or consumed: nothing to do
            moved += drained[0]
            if drained[1]:
                break
        if moved:
            self._host.log.info(
                "replies forwarded to the shared queue",
                extra={"action": "replies_forwarded", "queue": name, "n": moved},
            )
        return moved

    async def _drain(self, shared: str, name: str) -> tuple[int, bool] | None:
        """Move what waits in the queue ``name`` to ``shared``, then delete
        it: (how many moved, whether it is deleted), or None if there is no
        such queue or someone consumes it."""
        host = self._host
        moved = 0
        async with host.borrowed_channel(f"forwarding {name}") as channel:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return None  # no such queue (this closed the channel)
            if _consumers(queue):
                return None  # its owner (or a namesake) takes its replies
            while moved < FORWARD_LIMIT:
                incoming = await queue.get(no_ack=False, fail=False)
                if incoming is None:
                    break
                await host.resend(shared, incoming, incoming.headers)
                await incoming.ack()
                moved += 1
            try:
                await queue.delete(if_unused=True, if_empty=True)
            except aio_pika.exceptions.ChannelClosed:
                # refused (closing the channel): a reply came meanwhile, or
                # its owner came back
                return moved, False
        return moved, True


def owner_arguments(shared: str, ttl: float) -> dict[str, Any]:
    """The arguments an owner's queue is declared with."""
    return {
        "x-message-ttl": max(1, round(ttl * 1000)),
        "x-dead-letter-exchange": any_exchange(shared),
    }


def _consumers(queue: AbstractQueue) -> int:
    result = queue.declaration_result
    return int(getattr(result, "consumer_count", 0) or 0)
