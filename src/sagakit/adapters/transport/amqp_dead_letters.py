"""Reading and replaying an AMQP queue's dead letters (``<queue>.dlq``).

Dead letters are taken with ``basic.get`` on a short-lived channel. Reading
puts them all back in place at the end with one ``nack(multiple,
requeue)``; replaying republishes each to its queue, confirmed and without
the ``x-sagakit-*`` headers, before acknowledging it on the dead-letter
queue (at least once: a crash in between leaves it in both places).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol

from sagakit._extras import needs_extra
from sagakit.adapters.transport.amqp_consumer import Incoming
from sagakit.adapters.transport.delivery import replay_headers, replayed
from sagakit.ports.transport import DeadLetter

with needs_extra(
    "RabbitTransport and CeleryTransport need aio-pika", "rabbitmq", "celery"
):
    from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, HeadersType

__all__ = ["DeadLetterSource", "read", "replay"]


class DeadLetterSource(Protocol):
    """What reading and replaying dead letters needs of a transport."""

    @property
    def log(self) -> logging.Logger: ...

    def queue_name(self, queue: str) -> str: ...

    async def exists(self, name: str) -> bool:
        """Whether the broker has queue ``name`` (looked up, not created)."""

    def borrowed_queue(
        self, name: str, action: str
    ) -> contextlib.AbstractAsyncContextManager[AbstractQueue]:
        """The durable queue ``name`` on a channel of its own, closed after."""

    def dead_letter_of(self, queue: str, incoming: Incoming) -> DeadLetter: ...

    async def resend(
        self, name: str, incoming: Incoming, headers: HeadersType
    ) -> None: ...


async def _next(dlq: AbstractQueue) -> AbstractIncomingMessage | None:
    """The oldest message of ``dlq`` (not acknowledged), or None."""
    return await dlq.get(no_ack=False, fail=False)


async def read(source: DeadLetterSource, queue: str, limit: int) -> list[DeadLetter]:
    """The dead letters of ``queue``, oldest first, left where they are."""
    name = f"{source.queue_name(queue)}.dlq"
    found: list[DeadLetter] = []
    if not await source.exists(name):  # read-only: never declared here
        return found
    async with source.borrowed_queue(name, f"reading {name}") as dlq:
        last: AbstractIncomingMessage | None = None
        while len(found) < limit and (incoming := await _next(dlq)) is not None:
            last = incoming
            found.append(source.dead_letter_of(queue, incoming))
        if last is not None:  # put them all back, in place
            await last.nack(multiple=True, requeue=True)
    return found


async def replay(source: DeadLetterSource, queue: str, limit: int) -> int:
    """Move up to ``limit`` dead letters of ``queue`` back to it; how many moved.
    Messages taken but not yet moved go back to the dead-letter queue if this
    fails (the channel closes)."""
    name = source.queue_name(queue)
    moved = 0
    if not await source.exists(f"{name}.dlq"):
        return replayed(source.log, queue, moved)
    async with source.borrowed_queue(f"{name}.dlq", f"replaying {name}.dlq") as dlq:
        while moved < limit and (incoming := await _next(dlq)) is not None:
            await source.resend(name, incoming, replay_headers(incoming.headers))
            await incoming.ack()
            moved += 1
    return replayed(source.log, queue, moved)
