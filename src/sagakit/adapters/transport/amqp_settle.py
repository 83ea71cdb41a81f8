"""Settling what an AMQP consumer received: handle it, or send it again.

:func:`settle` runs the handler on a delivery (each envelope of a batch on
its own) and returns once the delivery may be acknowledged: handled, or
republished, confirmed, to the end of its queue with the delivery count
incremented, or to its dead-letter queue with the reason (see
:mod:`sagakit.adapters.transport.delivery` for the rules). The transport
says how a message is opened and sent again (:class:`Resender`).

When sending it on fails, :func:`settle` raises and the subscription gives
the delivery back to the broker, which delivers it again with the count it
had; :class:`~sagakit.adapters.transport.amqp_given_back.GivenBack` remembers
it meanwhile, so that this delivery counts too (that module says what counts).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from sagakit._extras import needs_extra
from sagakit.adapters.transport.amqp_consumer import Incoming
from sagakit.adapters.transport.amqp_given_back import GivenBack
from sagakit.adapters.transport.delivery import (
    ACK,
    DELIVERIES_HEADER,
    Verdict,
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
    *,
    given_back: GivenBack,
) -> None:
    """Handle ``incoming``, received for the logical ``queue`` (whose broker
    queue and dead-letter queue take what fails); returns once it may be
    acknowledged. If sending it on fails, ``given_back`` remembers it (see
    :mod:`~sagakit.adapters.transport.amqp_given_back`) and the error is
    raised: the caller gives the delivery back to the broker."""
    headers = incoming.headers
    opened = transport.open_message(incoming)
    deliveries = counted(headers) + 1
    if isinstance(opened, list):
        await _settle_parts(
            transport,
            (queue, incoming),
            opened,
            handler,
            (deliveries, max_deliveries, given_back),
        )
        return
    key = opened.id if isinstance(opened, Envelope) else None
    times = 0
    if incoming.redelivered:  # given back by this subscription, maybe
        times, opened = given_back.past(opened)
    verdict = await deliver(handler, opened, deliveries + times, max_deliveries)
    if verdict is not ACK:
        try:
            await _send_on(transport, queue, incoming, verdict)
        except Exception:
            if key is not None:
                given_back.gave_back(key, times + 1, verdict.reason)
            raise
    if times and key is not None:
        given_back.forget(key)


async def _send_on(
    transport: Resender, queue: str, incoming: Incoming, verdict: Verdict
) -> None:
    """Republish ``incoming`` to the end of its queue, counted, or to its
    dead-letter queue, as ``verdict`` says; returns on the confirm."""
    name = transport.queue_name(queue)
    log = transport.log
    headers = incoming.headers
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
    counts: tuple[int, int, GivenBack],
) -> None:
    """Handle each envelope of a batch on its own (concurrently, as if each
    had come alone); one that failed is sent again alone, counted, or
    dead-lettered alone with its reason, before the batch is settled. If
    that fails, each envelope that failed is remembered as given back."""
    queue, incoming = received  # the logical queue, the batch
    deliveries, max_deliveries, given_back = counts  # the header's, the most
    past = [(0, p.opened) for p in parts]
    if incoming.redelivered:
        past = [given_back.past(p.opened) for p in parts]
    verdicts = await asyncio.gather(
        *(
            deliver(handler, opened, deliveries + times, max_deliveries)
            for times, opened in past
        )
    )
    try:
        await _send_parts_on(transport, (queue, incoming), parts, verdicts)
    except Exception:
        for part, (times, _), verdict in zip(parts, past, verdicts, strict=True):
            if verdict is not ACK and isinstance(part.opened, Envelope):
                given_back.gave_back(part.opened.id, times + 1, verdict.reason)
        raise
    for part, (times, _) in zip(parts, past, strict=True):
        if times and isinstance(part.opened, Envelope):
            given_back.forget(part.opened.id)


async def _send_parts_on(
    transport: Resender,
    received: tuple[str, Incoming],
    parts: list[Part],
    verdicts: list[Verdict],
) -> None:
    """Send each part of a batch that failed on alone, as its verdict says."""
    queue, incoming = received
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
