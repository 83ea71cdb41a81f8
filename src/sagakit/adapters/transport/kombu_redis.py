"""kombu's Redis layout, as :mod:`sagakit.adapters.transport.celery_redis` reads
and writes it: list names per priority, the JSON a list item holds, and the
Lua script that takes items and records them as unacknowledged in one step.

Layout in the Redis database of the URL, for a Celery queue ``q`` (the
transport's ``prefix``, empty by default, gives ``<prefix>.q``):

- ``q``: a list of kombu messages, each a JSON object with ``body`` (the task
  body, base64), ``content-encoding``, ``content-type`` (always
  ``application/json`` here), ``headers`` (Celery's task headers) and
  ``properties`` (``correlation_id``, ``reply_to``, ``delivery_mode``,
  ``delivery_info`` with ``exchange`` ``""`` and ``routing_key`` ``q``,
  ``priority``, ``body_encoding`` and a fresh ``delivery_tag``). Publishers
  ``LPUSH``; consumers take from the right, so the list is FIFO. Messages a
  Celery client sent with a priority live in kombu's extra lists
  ``q\\x06\\x163``, ``q\\x06\\x166`` and ``q\\x06\\x169``, read after ``q`` as
  kombu reads them.
- ``unacked`` (hash: delivery tag to ``[message, exchange, routing_key]``) and
  ``unacked_index`` (sorted set: delivery tag by Unix time taken): kombu's
  acknowledgement emulation, shared by every queue of the database, Celery's
  included. We store ``""`` and ``q`` as exchange and routing key, so whoever
  restores an entry (we or a Celery worker) puts it back on ``q``.
- ``q.dlq``: dead letters, kombu messages as they arrived (a pickle stays
  inert base64) with the headers ``x-sagakit-reason``, ``x-sagakit-dead-at``
  and ``x-sagakit-queue``, newest at the head as in any kombu queue.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sagakit.messaging.envelope import one_line

SEP = "\x06\x16"
"""kombu's separator between a queue's name and its priority step."""
PRIORITY_STEPS = (0, 3, 6, 9)
"""kombu's default ``priority_steps``: one list per step, ``0`` read first."""
HEADROOM = 64 * 1024
"""Bytes a kombu message may hold beyond its base64 body (headers, properties)."""

Message = dict[str, Any]
"""A kombu message: ``body``, ``content-encoding``, ``content-type``,
``headers`` and ``properties``."""

TAKE = """
-- KEYS[1] unacked, KEYS[2] unacked_index, KEYS[3..] the queue's lists in the
-- order they are read; ARGV[1] how many, ARGV[2] now, ARGV[3] the queue name.
-- Returns tag, item, tag, item...: tag '' for an item with no delivery tag.
local taken = {}
local wanted = 2 * tonumber(ARGV[1])
local queue = cjson.encode(ARGV[3])
for i = 3, #KEYS do
  while #taken < wanted do
    local item = redis.call('RPOP', KEYS[i])
    if not item then break end
    local ok, message = pcall(cjson.decode, item)
    local tag = ''
    if ok and type(message) == 'table' and type(message.properties) == 'table'
        and type(message.properties.delivery_tag) == 'string' then
      tag = message.properties.delivery_tag
    end
    if tag ~= '' then
      redis.call('ZADD', KEYS[2], ARGV[2], tag)
      redis.call('HSET', KEYS[1], tag, '[' .. item .. ', "", ' .. queue .. ']')
    end
    taken[#taken + 1] = tag
    taken[#taken + 1] = item
  end
end
return taken
"""


@dataclass(frozen=True, slots=True)
class Opened:
    """A kombu message read from a list."""

    message: Message
    body: bytes
    content_type: str | None
    headers: dict[str, Any]


def item_limit(limit: int) -> int:
    return (limit + 2) // 3 * 4 + HEADROOM


def open_item(item: bytes, limit: int) -> Opened | str:
    """The kombu message ``item``, or why it is not one (never unpickles)."""
    if len(item) > item_limit(limit):
        return f"{len(item)} bytes is over the {item_limit(limit)}-byte limit"
    try:
        message = json.loads(item)
    except (ValueError, RecursionError) as exc:
        return f"not a kombu message: {one_line(str(exc)) or type(exc).__name__}"
    if not isinstance(message, dict) or not isinstance(message.get("properties"), dict):
        return "not a kombu message: no properties object"
    headers = message.get("headers") or {}
    content_type = message.get("content-type")
    if not isinstance(headers, dict) or not isinstance(content_type, str | None):
        return "not a kombu message: headers or content-type of the wrong type"
    body, encoding = message.get("body"), message["properties"].get("body_encoding")
    if not isinstance(body, str | None):
        return f"not a kombu message: body is {type(body).__name__}"
    try:
        if encoding == "base64":
            data = base64.b64decode(body or "", validate=True)
        elif encoding is None or str(encoding).lower() == "utf-8":
            data = (body or "").encode("utf-8")
        else:
            return f"body encoding {one_line(str(encoding), 80)!r} is not supported"
    except ValueError as exc:  # binascii.Error, UnicodeEncodeError
        return f"undecodable body: {one_line(str(exc))}"
    return Opened(message, data, content_type, headers)


def priority(message: Message) -> int:
    """kombu's ``_get_message_priority``: the priority clamped to 0..9."""
    try:
        return max(min(int(message["properties"]["priority"]), 9), 0)
    except (TypeError, ValueError, KeyError):
        return 0


def pairs(taken: Iterable[bytes]) -> list[tuple[str, bytes]]:
    flat = list(taken)
    return [
        (tag.decode(), item) for tag, item in zip(flat[::2], flat[1::2], strict=True)
    ]


def routed(raw: bytes | None) -> tuple[str, str] | None:
    """Exchange and routing key of an ``unacked`` entry, if it has them."""
    try:
        _message, exchange, routing_key = json.loads(raw or b"null")
    except (ValueError, TypeError, RecursionError):
        return None
    if isinstance(exchange, str) and isinstance(routing_key, str):
        return exchange, routing_key
    return None
