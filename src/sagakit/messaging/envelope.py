"""The message envelope: JSON only (never pickle), versioned, size-limited.

Every message that crosses a broker is an :class:`Envelope`: a command from an
orchestrator to a participant, a participant's reply, or a choreography event.
``decode`` turns bytes into an envelope or raises :class:`MalformedMessage`
with a one-line reason; transports dead-letter such messages.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sagakit.errors import TransportError

ENVELOPE_VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024
"""Default size limit of an encoded message (256 KiB)."""
MAX_DEPTH = 64
"""How deeply JSON arrays and objects may nest in a message."""
MAX_REASON = 300
"""Longest reason kept (dead-letter listings and log lines show it)."""

Kind = Literal["command", "reply", "event"]


class MalformedMessage(TransportError):
    """Bytes that are not a valid sagakit envelope; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        reason = one_line(reason) or "unknown reason"
        super().__init__(f"malformed message: {reason}")
        self.reason = reason


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """``text`` on one printable line: whitespace runs become one space, other
    control characters are escaped (``\\x07``), and it is cut at ``limit``."""
    flat = " ".join(text[: limit * 2].split())
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in flat)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


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
        id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Envelope:
        """The reply to this command (same type, saga, step, attempt), with
        ``id`` (a new one by default) and ``headers`` (the command's)."""
        return Envelope(
            id=id or new_message_id(),
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
            headers=self.headers if headers is None else headers,
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


_SURROGATE = re.compile("[\ud800-\udfff]")
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,40}")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError(f"duplicate key {_repeated(pairs)[:40]!r}")
    return obj


def _repeated(pairs: list[tuple[str, Any]]) -> str:
    """The first key of ``pairs`` that an earlier one repeats."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return ""


def _shown(part: object) -> str:
    """A path part or key as a reason shows it (quoted when it is odd)."""
    text = str(part)
    return text if _NAME.fullmatch(text) else repr(text[:40])


def _check_tree(raw: Any) -> None:
    """Depth and string checks json.loads does not make (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(raw, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise MalformedMessage("a string holds a lone UTF-16 surrogate")
            continue
        if not isinstance(node, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise MalformedMessage(f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((key, depth) for key in node)
            stack.extend((value, depth + 1) for value in node.values())
        else:
            stack.extend((value, depth + 1) for value in node)


_DECODER = json.JSONDecoder(
    parse_float=_finite, parse_constant=_no_constant, object_pairs_hook=_unique_keys
)
"""Made once: ``json.loads`` with hooks builds a decoder (and its C scanner)
on every call, which cost more than the parse of a small envelope."""

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def _may_need_tree_check(data: bytes | str) -> bool:
    """False when the text alone proves what :func:`_check_tree` checks: it
    cannot nest deeper than its count of brackets, and valid UTF-8 holds a
    lone surrogate only as a ``\\uD8xx``-``\\uDFxx`` escape."""
    if isinstance(data, str):
        brackets = data.count("{") + data.count("[")
        return brackets > MAX_DEPTH or (
            _SURROGATE.search(data) is not None
            or _SURROGATE_ESCAPE.search(data) is not None
        )
    brackets = data.count(b"{") + data.count(b"[")
    # most messages hold no escape at all: a substring search, not a regex
    return brackets > MAX_DEPTH or (
        b"\\u" in data and _SURROGATE_ESCAPE_BYTES.search(data) is not None
    )


def _parse(data: bytes | str) -> Any:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise MalformedMessage(
            f"not JSON: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    if text.startswith("\ufeff"):  # as json.loads says it
        raise MalformedMessage("not JSON: Unexpected UTF-8 BOM")
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise MalformedMessage("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, the hooks, int digit limits
        raise MalformedMessage(f"not JSON: {exc}") from None


def decode(data: bytes | str, *, limit: int = MAX_MESSAGE_BYTES) -> Envelope:
    """Parse and validate an envelope, or raise ``MalformedMessage``.

    Strict on purpose: UTF-8 JSON only (no NaN or Infinity, no duplicate keys,
    nesting up to ``MAX_DEPTH``), version 1 exactly, and no type coercion
    (``"attempt": "2"`` is refused, not converted). The reason is one line.
    """
    size = len(data if isinstance(data, bytes) else data.encode("utf-8", "replace"))
    if size > limit:
        raise MalformedMessage(f"{size} bytes is over the {limit}-byte limit")
    raw, deep = parse_json(data)
    if not isinstance(raw, dict):
        raise MalformedMessage(f"not a JSON object but {type(raw).__name__}")
    if deep:
        _check_tree(raw)
    return envelope_of(raw)


def parse_json(data: bytes | str) -> tuple[Any, bool]:
    """What ``data`` holds, parsed as :func:`decode` parses it (UTF-8, no
    NaN, no duplicate keys), and whether parts of it still need
    :func:`check_nesting`; or ``MalformedMessage``."""
    return _parse(data), _may_need_tree_check(data)


def check_nesting(raw: Any) -> None:
    """``MalformedMessage`` if ``raw`` nests deeper than an envelope may or
    holds a lone surrogate."""
    _check_tree(raw)


def envelope_of(raw: Any) -> Envelope:
    """The envelope a parsed JSON object describes (version 1, strictly
    validated), or ``MalformedMessage``."""
    if not isinstance(raw, dict):
        raise MalformedMessage(f"not a JSON object but {type(raw).__name__}")
    if "v" not in raw:
        raise MalformedMessage("no envelope version (field 'v')")
    version = raw["v"]
    if type(version) is not int or version != ENVELOPE_VERSION:
        shown = repr(version)[:40]
        raise MalformedMessage(
            f"unsupported envelope version {shown} (this sagakit reads "
            f"{ENVELOPE_VERSION})"
        )
    try:
        return Envelope.model_validate(raw, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(_shown(p) for p in first["loc"]) or "message"
        raise MalformedMessage(f"{where}: {first['msg']}") from None
