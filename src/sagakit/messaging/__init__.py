"""Messages between orchestrators and participants: the envelope and its codec."""

from __future__ import annotations

from sagakit.messaging.envelope import (
    MAX_MESSAGE_BYTES,
    Envelope,
    MalformedMessage,
    decode,
    encode,
    new_message_id,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Envelope",
    "MalformedMessage",
    "decode",
    "encode",
    "new_message_id",
]
