"""Several envelopes in one broker message: an opt-in of the RabbitMQ transport.

A batch is the JSON object ``{"batch": 1, "messages": [<envelope>, ...]}``:
``batch`` is the version of the batch format (this sagakit reads 1), and each
element is an envelope as :func:`~sagakit.messaging.envelope.encode` writes
it (version 1). A reader that does not know batches finds no envelope
version and dead-letters the message whole; it is never misread.

:func:`open_body` opens what a consumer received: an envelope, a list of
:class:`Part` for a batch, or the reason the whole message goes to the
dead-letter queue (not JSON, an unknown batch version, no messages, too
many). Each part is handled, deduplicated and settled on its own; a part
that is not a valid envelope carries its reason, and :meth:`Part.body` gives
the bytes to send it again or dead-letter it alone.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sagakit.messaging.envelope import (
    Envelope,
    MalformedMessage,
    check_nesting,
    envelope_of,
    parse_json,
)

__all__ = [
    "BATCH_VERSION",
    "MAX_BATCH",
    "Part",
    "batch_size",
    "encode_batch",
    "group",
    "open_body",
]

K = TypeVar("K", bound=Hashable)

BATCH_VERSION = 1
MAX_BATCH = 100
"""Most envelopes in one batch."""
_HEAD = b'{"batch":1,"messages":['
_TAIL = b"]}"


def batch_size(bodies: Sequence[bytes]) -> int:
    """Bytes of the batch of ``bodies`` (to keep it under the size limit)."""
    return len(_HEAD) + len(_TAIL) + sum(map(len, bodies)) + max(len(bodies) - 1, 0)


def encode_batch(bodies: Sequence[bytes]) -> bytes:
    """The batch of ``bodies`` (encoded envelopes), written as they are."""
    return _HEAD + b",".join(bodies) + _TAIL


@dataclass(frozen=True, slots=True)
class Part:
    """One element of a batch: its envelope, or why it is not one."""

    raw: Any
    opened: Envelope | str

    def body(self) -> bytes:
        """This element alone, as a message of its own."""
        text = json.dumps(self.raw, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8", "surrogatepass")


def open_body(data: bytes, limit: int) -> Envelope | list[Part] | str:
    """The envelope ``data`` encodes, the parts of a batch, or why the whole
    message goes to the dead-letter queue unhandled."""
    if len(data) > limit:
        return f"{len(data)} bytes is over the {limit}-byte limit"
    try:
        raw, deep = parse_json(data)
        if not isinstance(raw, dict):
            return f"not a JSON object but {type(raw).__name__}"
        if "batch" not in raw:
            if deep:
                check_nesting(raw)
            return envelope_of(raw)
        return _parts(raw, deep)
    except MalformedMessage as exc:
        return exc.reason
    except Exception as exc:  # json.loads: RecursionError on deep nesting
        return f"undecodable: {exc!r}"


def _parts(raw: dict[str, Any], deep: bool) -> list[Part] | str:
    version = raw["batch"]
    if type(version) is not int or version != BATCH_VERSION:
        return (
            f"unsupported batch version {repr(version)[:40]} (this sagakit "
            f"reads {BATCH_VERSION})"
        )
    if set(raw) != {"batch", "messages"}:
        extra = sorted(set(raw) - {"batch", "messages"})
        return f"a batch has 'batch' and 'messages' only, not {extra[:3]}"
    messages = raw["messages"]
    if not isinstance(messages, list) or not messages:
        return "a batch's 'messages' must be a non-empty list"
    if len(messages) > MAX_BATCH:
        return f"a batch of {len(messages)} messages is over {MAX_BATCH}"
    parts = []
    for element in messages:
        try:
            if deep:  # each as deep as it may be alone
                check_nesting(element)
            parts.append(Part(element, envelope_of(element)))
        except MalformedMessage as exc:
            parts.append(Part(element, exc.reason))
    return parts


def group(
    messages: Sequence[tuple[K, bytes]], limit: int
) -> list[tuple[K, bytes, list[int]]]:
    """``messages`` (where to, encoded envelope) as broker messages: those
    to the same place (a queue), in order, batched up to :data:`MAX_BATCH`
    and ``limit`` bytes; each with the indexes of the messages it carries.
    A message that shares its place with no other goes as it is."""
    by_queue: dict[K, list[int]] = {}
    for index, (queue, _) in enumerate(messages):
        by_queue.setdefault(queue, []).append(index)
    grouped: list[tuple[K, bytes, list[int]]] = []
    for queue, indexes in by_queue.items():
        members: list[int] = []
        size = len(_HEAD) + len(_TAIL) - 1  # n members, n - 1 commas
        for index in indexes:
            body = messages[index][1]
            if members and (len(members) >= MAX_BATCH or size + len(body) + 1 > limit):
                grouped.append(_sent(queue, messages, members))
                members, size = [], len(_HEAD) + len(_TAIL) - 1
            members.append(index)
            size += len(body) + 1
        grouped.append(_sent(queue, messages, members))
    return grouped


def _sent(
    queue: K, messages: Sequence[tuple[K, bytes]], members: list[int]
) -> tuple[K, bytes, list[int]]:
    if len(members) == 1:
        return queue, messages[members[0]][1], members
    return queue, encode_batch([messages[i][1] for i in members]), members
