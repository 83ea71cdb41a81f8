"""Publishing many AMQP messages at once, each with its own publisher confirm.

aiormq's ``basic_publish`` writes one message, then waits for the socket to
drain and for the broker's confirm; publishing many concurrently takes a task
each. :func:`publish_many` writes a whole batch in one frame buffer (one
socket write) under the channel's lock, registering a confirm future per
message exactly as ``basic_publish`` does, and returns the futures without
awaiting them: the broker confirms many at once (``multiple``), and whoever
published waits for all of them together.

It works on aiormq's channel internals (its delivery tag counter and its
confirm and return maps); :func:`batchable` says whether a channel has them,
and the transport falls back to ``basic_publish`` where it does not.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sagakit._extras import needs_extra

with needs_extra(
    "RabbitTransport and CeleryTransport need aio-pika", "rabbitmq", "celery"
):
    from aiormq.abc import ChannelFrame
    from pamqp.body import ContentBody
    from pamqp.commands import Basic
    from pamqp.header import ContentHeader

from sagakit.adapters.transport.amqp_writes import Writes

__all__ = ["Outgoing", "batchable", "publish_many"]

Outgoing = tuple[str, str, bytes, "Basic.Properties"]
"""A message to publish: exchange (``""``, the default one: the routing key
names a queue), routing key, body and properties."""

_NEEDED = (
    "lock",
    "delivery_tag",
    "confirmations",
    "message_id_delivery_tag",
    "write_queue",
    "number",
    "max_content_size",
    "create_future",
    "publisher_confirms",
)


def batchable(channel: object) -> bool:
    """Whether ``channel`` (aiormq's) has what :func:`publish_many` uses."""
    return all(hasattr(channel, name) for name in _NEEDED) and bool(
        getattr(channel, "publisher_confirms", False)
    )


def _bodies(body: bytes, size: int) -> list[ContentBody]:
    if not body:
        return []
    return [ContentBody(body[i : i + size]) for i in range(0, len(body), size)]


async def publish_many(
    channel: Any, messages: Sequence[Outgoing], writes: Writes | None = None
) -> list[asyncio.Future[object]]:
    """Write ``messages`` (``mandatory``) to ``channel`` in one go (with what
    else ``writes`` sends in this turn of the loop, if given); returns a
    future per message, resolved by its confirm (or failed by a nack, a
    return or the channel closing). Check :func:`batchable` first."""
    async with channel.lock:
        size = channel.max_content_size
        frames: list[Any] = []
        for exchange, routing_key, body, properties in messages:
            if not properties.message_id:  # returns are matched by message id
                properties.message_id = uuid.uuid4().hex
            frames.append(
                Basic.Publish(
                    exchange=exchange, routing_key=routing_key, mandatory=True
                )
            )
            frames.append(ContentHeader(properties=properties, body_size=len(body)))
            frames.extend(_bodies(body, size))
        payload = ChannelFrame.marshall(channel_number=channel.number, frames=frames)
        # queued, not written yet: the writer runs only once this task
        # yields, after the confirms are registered under the broker's tags
        if writes is None:
            await channel.write_queue.put(payload)
        else:
            writes.add(channel.write_queue, payload.payload)
        futures: list[asyncio.Future[object]] = []
        by_id: dict[str, int] = channel.message_id_delivery_tag
        for *_, properties in messages:
            channel.delivery_tag += 1
            tag: int = channel.delivery_tag
            confirmation: asyncio.Future[object] = channel.create_future()
            channel.confirmations[tag] = confirmation
            message_id: str = properties.message_id or ""
            by_id[message_id] = tag
            confirmation.add_done_callback(_forget(by_id, message_id, tag))
            futures.append(confirmation)
    return futures


def _forget(
    by_id: dict[str, int], message_id: str, tag: int
) -> Callable[[asyncio.Future[object]], None]:
    def forget(_: asyncio.Future[object]) -> None:
        if by_id.get(message_id) == tag:
            del by_id[message_id]

    return forget
