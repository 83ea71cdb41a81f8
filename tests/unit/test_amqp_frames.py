"""The hand-written AMQP frames are byte for byte what pamqp writes."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("aio_pika")

from aiormq.abc import ChannelFrame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from sagakit.adapters.transport.amqp_frames import (
    ack_frames,
    publish_frames,
)

PROPERTIES = [
    ("application/json", 2, "0123456789abcdef"),
    (None, None, None),
    ("application/json", 2, None),
    (None, 1, "m" * 255),
]


def pamqp_publish(
    to: tuple[str, str], body: bytes, properties: tuple[Any, Any, Any], sizes: Any
) -> bytes:
    channel, frame_max = sizes
    content_type, delivery_mode, message_id = properties
    frames: list[object] = [
        Basic.Publish(exchange=to[0], routing_key=to[1], mandatory=True),
        ContentHeader(
            properties=Basic.Properties(
                content_type=content_type,
                delivery_mode=delivery_mode,
                message_id=message_id,
            ),
            body_size=len(body),
        ),
    ]
    frames += [
        ContentBody(body[i : i + frame_max]) for i in range(0, len(body), frame_max)
    ]
    return ChannelFrame.marshall(channel_number=channel, frames=frames).payload  # type: ignore[arg-type]


@pytest.mark.parametrize("properties", PROPERTIES)
@pytest.mark.parametrize(
    "body", [b"", b"{}", b"x" * 300, "\u00e9t\u00e9".encode() * 400]
)
@pytest.mark.parametrize("to", [("", "sagakit.kitchen"), ("sagakit.replies", "k1")])
def test_publish_frames_match_pamqp(
    to: tuple[str, str],
    body: bytes,
    properties: tuple[str | None, int | None, str | None],
) -> None:
    for channel, frame_max in ((1, 131_064), (7, 300)):
        ours = publish_frames(channel, to, body, properties, frame_max=frame_max)
        assert ours == pamqp_publish(to, body, properties, (channel, frame_max))


def test_a_short_string_over_255_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="256 bytes"):
        publish_frames(1, ("", "q" * 256), b"", (None, None, None), frame_max=100)


@pytest.mark.parametrize(
    ("tags", "up_to"), [([], 5), ([7, 9], None), ([7], 3), ([2**40], 2**33), ([], None)]
)
def test_ack_frames_match_pamqp(tags: list[int], up_to: int | None) -> None:
    frames = [Basic.Ack(delivery_tag=up_to, multiple=True)] if up_to else []
    frames += [Basic.Ack(delivery_tag=tag) for tag in tags]
    expected = ChannelFrame.marshall(channel_number=3, frames=frames).payload
    assert ack_frames(3, tags, up_to) == expected
