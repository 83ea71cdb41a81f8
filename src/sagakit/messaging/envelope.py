"""The message envelope: JSON only (never pickle), versioned, size-limited.

Every message that crosses a broker is an :class:`Envelope`: a command from an
orchestrator to a participant, a participant's reply, or a choreography event.
``decode`` turns bytes into an envelope or raises :class:`MalformedMessage`
with a one-line reason; transports dead-letter such messages.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sagakit.errors import TransportError

ENVELOPE_VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024
"""Default size limit of an encoded message (256 KiB)."""

Kind = Literal["command", "reply", "event"]


class MalformedMessage(TransportError):
    """Bytes that are not a valid sagakit envelope; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed message: {reason}")
        self.reason = reason


def new_message_id() -> str:
    return uuid.uuid4().hex


class Envelope(BaseModel):
    """One message.

    ``type`` names the command or event (``kitchen.create_ticket``); a reply
    keeps its command's type and says ``ok``. ``correlation_id`` ties a reply
    to its command (``<saga_id>:<step>:<attempt>``) or events to one business
    transaction. ``reply_to`` is the queue replies go to.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    id: str = Field(default_factory=new_message_id, min_length=1, max_length=200)
    kind: Kind
    type: str = Field(min_length=1, max_length=200)
    correlation_id: str = Field(min_length=1, max_length=400)
    saga_id: str | None = None
    step: str | None = None
    attempt: int = Field(default=1, ge=1)
    compensation: bool = False
    reply_to: str | None = None
    ok: bool | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    error: dict[str, Any] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    sent_at: float = 0.0

    def reply(
        self,
        *,
        ok: bool,
        payload: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        sent_at: float = 0.0,
    ) -> Envelope:
        """The reply to this command (same type, saga, step, attempt)."""
        return Envelope(
            kind="reply",
            type=self.type,
            correlation_id=self.correlation_id,
            saga_id=self.saga_id,
            step=self.step,
            attempt=self.attempt,
            compensation=self.compensation,
            ok=ok,
            payload=payload or {},
            error=error,
            headers=self.headers,
            sent_at=sent_at,
        )


def encode(message: Envelope, *, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """JSON bytes of ``message``; ``MalformedMessage`` if over ``limit``."""
    data = message.model_dump_json(exclude_defaults=False).encode("utf-8")
    if len(data) > limit:
        raise MalformedMessage(
            f"message {message.id} ({message.type}) is {len(data)} bytes, "
            f"over the {limit}-byte limit"
        )
    return data


def decode(data: bytes | str, *, limit: int = MAX_MESSAGE_BYTES) -> Envelope:
    """Parse and validate an envelope, or raise ``MalformedMessage``."""
    size = len(data)
    if size > limit:
        raise MalformedMessage(f"{size} bytes is over the {limit}-byte limit")
    try:
        raw: Any = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None
    except RecursionError:
        raise MalformedMessage("JSON nested too deeply") from None
    if not isinstance(raw, dict):
        raise MalformedMessage(f"not a JSON object but {type(raw).__name__}")
    version = raw.get("v")
    if version != ENVELOPE_VERSION:
        raise MalformedMessage(
            f"unsupported envelope version {version!r} (this sagakit reads "
            f"{ENVELOPE_VERSION})"
        )
    try:
        return Envelope.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise MalformedMessage(f"{where}: {first['msg']}") from None
