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
and the transport falls back to ``basic_publish`` where it does not. The
frames are written by :func:`~sagakit.adapters.transport.amqp_frames.
publish_frames`, not pamqp.
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

from sagakit.adapters.transport.amqp_frames import publish_frames
from sagakit.adapters.transport.amqp_writes import Writes

__all__ = ["Outgoing", "batchable", "publish_many"]

Outgoing = tuple[str, str, bytes, str | None]
"""A message to publish: exchange (``""``, the default one: the routing key
names a queue), routing key, body and message id (None: a new one)."""

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


async def publish_many(
    channel: Any,
    messages: Sequence[Outgoing],
    writes: Writes | None = None,
    *,
    kind: tuple[str, int],
) -> list[asyncio.Future[object]]:
    """Write ``messages`` (``mandatory``, with the content type and delivery
    mode of ``kind``) to ``channel`` in one go (with what else ``writes``
    sends in this turn of the loop, if given); returns a future per message,
    resolved by its confirm (or failed by a nack, a return or the channel
    closing). Check :func:`batchable` first."""
    content_type, delivery_mode = kind
    async with channel.lock:
        size = channel.max_content_size
        number = channel.number
        frames: list[bytes] = []
        ids: list[str] = []
        for exchange, routing_key, body, given in messages:
            # returns are matched by message id
            message_id = given or uuid.uuid4().hex
            ids.append(message_id)
            frames.append(
                publish_frames(
                    number,
                    (exchange, routing_key),
                    body,
                    (content_type, delivery_mode, message_id),
                    frame_max=size,
                )
            )
        payload = b"".join(frames)
        # queued, not written yet: the writer runs only once this task
        # yields, after the confirms are registered under the broker's tags
        if writes is None:
            await channel.write_queue.put(ChannelFrame(payload, should_close=False))
        else:
            writes.add(channel.write_queue, payload)
        futures: list[asyncio.Future[object]] = []
        by_id: dict[str, int] = channel.message_id_delivery_tag
        for message_id in ids:
            channel.delivery_tag += 1
            tag: int = channel.delivery_tag
            confirmation: asyncio.Future[object] = channel.create_future()
            channel.confirmations[tag] = confirmation
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
