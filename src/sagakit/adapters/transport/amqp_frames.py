"""The AMQP 0-9-1 frames of the hot path, written with ``struct`` rather than pamqp.

pamqp marshals a frame by walking its spec (an ``isinstance`` and a
``getattr`` per field and per property, a ``BytesIO`` per frame): a
``basic.publish`` with its content header and body cost more than the rest
of sending a message. The frames every command and reply travel in have
one shape: :func:`publish_frames` writes ``basic.publish`` (``mandatory``),
the content header with ``content_type``, ``delivery_mode`` and
``message_id``, and the body frames; :func:`ack_frames` writes
``basic.ack``. The bytes are the same as pamqp's (a unit test compares
them); anything else (headers, other properties, ``basic.reject``) is left
to pamqp.
"""

from __future__ import annotations

import struct

__all__ = ["FRAME_END", "ack_frames", "publish_frames"]

FRAME_END = b"\xce"
_METHOD, _HEADER, _BODY = 1, 2, 3
_BASIC = 60
_PUBLISH, _ACK = 40, 80
# property flags of basic's content header: content-type, delivery-mode, message-id
_CONTENT_TYPE, _DELIVERY_MODE, _MESSAGE_ID = 0x8000, 0x1000, 0x0080

_frame_head = struct.Struct(">BHI").pack  # type, channel, payload size
_publish_head = struct.Struct(">HHH").pack  # class, method, reserved ticket
_header_head = struct.Struct(">HHQH").pack  # class, weight, body size, flags
_ack = struct.Struct(">BHIHHQB").pack  # frame head, class, method, tag, multiple


def _short(text: str) -> bytes:
    """An AMQP short string (length octet, UTF-8 bytes); ``ValueError`` if
    over 255 bytes, as pamqp says."""
    data = text.encode("utf-8")
    if len(data) > 255:  # noqa: PLR2004 - the octet's range
        raise ValueError(f"AMQP short string of {len(data)} bytes: {text[:40]!r}")
    return bytes((len(data),)) + data


def publish_frames(
    channel: int,
    to: tuple[str, str],
    body: bytes,
    properties: tuple[str | None, int | None, str | None],
    *,
    frame_max: int,
) -> bytes:
    """The frames of one ``mandatory`` ``basic.publish`` on ``channel`` to
    ``to`` (exchange, routing key): the method, the content header with
    ``properties`` (content type, delivery mode, message id; each None if
    absent) and ``body`` in frames of at most ``frame_max`` bytes of payload."""
    exchange, routing_key = to
    method = (
        _publish_head(_BASIC, _PUBLISH, 0)
        + _short(exchange)
        + _short(routing_key)
        + b"\x01"  # mandatory, not immediate
    )
    content_type, delivery_mode, message_id = properties
    flags = 0
    fields = b""
    if content_type is not None:
        flags |= _CONTENT_TYPE
        fields += _short(content_type)
    if delivery_mode is not None:
        flags |= _DELIVERY_MODE
        fields += bytes((delivery_mode,))
    if message_id is not None:
        flags |= _MESSAGE_ID
        fields += _short(message_id)
    header = _header_head(_BASIC, 0, len(body), flags) + fields
    parts = [
        _frame_head(_METHOD, channel, len(method)),
        method,
        FRAME_END,
        _frame_head(_HEADER, channel, len(header)),
        header,
        FRAME_END,
    ]
    for start in range(0, len(body), frame_max):
        chunk = body[start : start + frame_max]
        parts += (_frame_head(_BODY, channel, len(chunk)), chunk, FRAME_END)
    return b"".join(parts)


def ack_frames(channel: int, tags: list[int], multiple_up_to: int | None) -> bytes:
    """``basic.ack`` frames on ``channel``: one with ``multiple`` up to
    ``multiple_up_to`` (if given), then one per tag of ``tags``."""
    frames = []
    if multiple_up_to is not None:
        frames.append(_ack(_METHOD, channel, 13, _BASIC, _ACK, multiple_up_to, 1))
    frames.extend(_ack(_METHOD, channel, 13, _BASIC, _ACK, tag, 0) for tag in tags)
    return FRAME_END.join(frames) + FRAME_END if frames else b""
