"""Settling what an AMQP consumer received: handle it, or send it again.

:func:`settle` runs the handler on a delivery (each envelope of a batch on
its own) and returns once the delivery may be acknowledged: handled, or
republished, confirmed, to the end of its queue with the delivery count
incremented, or to its dead-letter queue with the reason (see
:mod:`sagakit.adapters.transport.delivery` for the rules). The transport
says how a message is opened and sent again (:class:`Resender`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from sagakit._extras import needs_extra
from sagakit.adapters.transport.amqp_consumer import Incoming
from sagakit.adapters.transport.delivery import (
    ACK,
    DELIVERIES_HEADER,
    counted,
    dead_letter_headers,
    deliver,
    requeued,
)
from sagakit.messaging.batch import Part
from sagakit.messaging.envelope import Envelope
from sagakit.ports.transport import Handler

with needs_extra(
    "RabbitTransport and CeleryTransport need aio-pika", "rabbitmq", "celery"
):
    from aio_pika.abc import HeadersType

__all__ = ["Resender", "settle"]


class Resender(Protocol):
    """What :func:`settle` needs of a transport."""

    @property
    def log(self) -> logging.Logger: ...

    def queue_name(self, queue: str) -> str:
        """The broker's name for the logical ``queue``."""

    def open_message(self, incoming: Incoming) -> Envelope | list[Part] | str:
        """The envelope ``incoming`` carries (the parts of a batch, where the
        adapter reads batches), or why it goes to the DLQ."""

    async def resend(self, name: str, incoming: Incoming, headers: HeadersType) -> None:
        """Publish ``incoming`` again to ``name``, confirmed, with ``headers``."""

    async def resend_body(
        self, name: str, body: bytes, message_id: str | None, headers: HeadersType
    ) -> None:
        """Publish ``body`` (one envelope of a batch) to ``name``, confirmed."""


async def settle(
    transport: Resender,
    queue: str,
    incoming: Incoming,
    handler: Handler,
    max_deliveries: int,
) -> None:
    """Handle ``incoming``, received for the logical ``queue`` (whose broker
    queue and dead-letter queue take what fails); returns once it may be
    acknowledged."""
    headers = incoming.headers
    opened = transport.open_message(incoming)
    deliveries = counted(headers) + 1
    if isinstance(opened, list):
        await _settle_parts(
            transport, (queue, incoming), opened, handler, (deliveries, max_deliveries)
        )
        return
    verdict = await deliver(handler, opened, deliveries, max_deliveries)
    if verdict is ACK:
        return
    name = transport.queue_name(queue)
    log = transport.log
    if verdict.reason is None:
        requeued(log, queue, verdict.deliveries)
        again = {**headers, DELIVERIES_HEADER: verdict.deliveries}
        await transport.resend(name, incoming, again)
    else:
        dead = dead_letter_headers(log, queue, headers, verdict.reason)
        await transport.resend(f"{name}.dlq", incoming, dead)


async def _settle_parts(
    transport: Resender,
    received: tuple[str, Incoming],
    parts: list[Part],
    handler: Handler,
    counts: tuple[int, int],
) -> None:
    """Handle each envelope of a batch on its own (concurrently, as if each
    had come alone); one that failed is sent again alone, counted, or
    dead-lettered alone with its reason, before the batch is settled."""
    queue, incoming = received  # the logical queue, the batch
    deliveries, max_deliveries = counts  # this delivery's, and the most
    verdicts = await asyncio.gather(
        *(deliver(handler, p.opened, deliveries, max_deliveries) for p in parts)
    )
    name = transport.queue_name(queue)
    headers = incoming.headers
    log = transport.log
    for part, verdict in zip(parts, verdicts, strict=True):
        if verdict is ACK:
            continue
        message_id = part.opened.id if isinstance(part.opened, Envelope) else None
        if verdict.reason is None:
            requeued(log, queue, verdict.deliveries)
            again = {**headers, DELIVERIES_HEADER: verdict.deliveries}
            await transport.resend_body(name, part.body(), message_id, again)
        else:
            dead = dead_letter_headers(log, queue, headers, verdict.reason)
            await transport.resend_body(f"{name}.dlq", part.body(), message_id, dead)
