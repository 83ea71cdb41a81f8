"""Celery's wire format, with no broker in sight: task messages (protocol v2,
JSON) built by Celery itself and read back, the task names of replies, and the
refusal of anything that is not JSON (a pickle is never deserialized).

Used by :mod:`sagakit.adapters.transport.celery` (on RabbitMQ) and
:mod:`sagakit.adapters.transport.celery_redis` (on Redis, as kombu stores
it); the rules are described in the former.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sagakit._extras import needs_extra
from sagakit.adapters.transport.delivery import (
    DEAD_AT_HEADER,
    REASON_HEADER,
    dead_at,
    text,
)
from sagakit.messaging.envelope import (
    MAX_MESSAGE_BYTES,
    Envelope,
    MalformedMessage,
    decode,
    encode,
)
from sagakit.ports.transport import DeadLetter

with needs_extra("the Celery transports need celery", "celery"):
    from celery import Celery
    from kombu.serialization import dumps as kombu_dumps

__all__ = [
    "FAILURE_SUFFIX",
    "JSON",
    "PICKLE",
    "SUCCESS_SUFFIX",
    "Celery",
    "TaskMessage",
    "build_task_message",
    "envelope_bytes",
    "is_v2_body",
    "message_app",
    "open_task",
    "parse_task_message",
    "read_dead_letter",
    "refuse_content",
    "task_name",
]

JSON = "application/json"
SUCCESS_SUFFIX = ".response.success"
FAILURE_SUFFIX = ".response.failure"
PICKLE = frozenset({"application/x-python-serialize", "application/python-pickle"})


def task_name(message: Envelope) -> str:
    """The Celery task name that carries ``message``."""
    if message.kind == "reply":
        return message.type + (SUCCESS_SUFFIX if message.ok else FAILURE_SUFFIX)
    return message.type


def is_v2_body(raw: object) -> bool:
    """Whether ``raw`` is shaped like a protocol v2 body: ``[args, kwargs, embed]``."""
    return (
        isinstance(raw, list)
        and len(raw) == 3  # noqa: PLR2004 - the protocol's three parts
        and isinstance(raw[0], list)
        and isinstance(raw[1], dict)
        and (raw[2] is None or isinstance(raw[2], dict))
    )


def refuse_content(content_type: str | None, headers: Mapping[str, object]) -> None:
    if content_type != JSON:
        kind = " (pickle)" if content_type in PICKLE else ""
        raise MalformedMessage(
            f"content type {content_type or 'missing'}{kind} refused: sagakit "
            "reads JSON task messages only and never unpickles"
        )
    compression = headers.get("compression")
    if compression:
        raise MalformedMessage(
            f"compressed task messages ({text(compression)}) are not supported"
        )


def parse_task_message(
    body: bytes,
    *,
    content_type: str | None,
    headers: Mapping[str, object],
    limit: int = MAX_MESSAGE_BYTES,
) -> Envelope:
    """The envelope in a Celery task message, or ``MalformedMessage``.

    Only the content type is looked at before the body is parsed, and the
    body is only ever parsed as JSON."""
    refuse_content(content_type, headers)
    if len(body) > limit:
        return decode(body, limit=limit)  # raises with the size in the reason
    try:
        raw: Any = json.loads(body)
    except (ValueError, RecursionError):
        return decode(body, limit=limit)  # raises with decode's own reason
    if is_v2_body(raw):
        args = raw[0]
        if not args or not isinstance(args[0], dict):
            what = type(args[0]).__name__ if args else "missing"
            raise MalformedMessage(
                f"task argument 0 is not an envelope object but {what}"
            )
        message = decode(json.dumps(args[0]).encode(), limit=limit)
    elif isinstance(raw, dict) and "task" in raw and "args" in raw:
        raise MalformedMessage(
            "Celery task message protocol v1 is not supported (use task_protocol 2)"
        )
    else:
        message = decode(body, limit=limit)  # a bare envelope
    task = headers.get("task")
    if task is not None and text(task) != task_name(message):
        raise MalformedMessage(
            f"task {text(task)!r} does not carry a {message.kind} of type "
            f"{message.type!r} (expected task {task_name(message)!r})"
        )
    return message


def envelope_bytes(body: bytes, content_type: str | None) -> bytes:
    """``args[0]`` of a JSON Celery task message, re-encoded; else ``body``."""
    if content_type != JSON:
        return body  # never deserialized
    try:
        raw: Any = json.loads(body)
    except (ValueError, RecursionError):
        return body
    if is_v2_body(raw) and raw[0] and isinstance(raw[0][0], dict):
        return json.dumps(raw[0][0]).encode()
    return body


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """A Celery task message (protocol v2, JSON), before any broker sees it."""

    body: bytes
    headers: dict[str, Any]
    content_type: str
    content_encoding: str
    correlation_id: str | None
    reply_to: str | None


def message_app() -> Celery:
    """A Celery app that only builds task messages (never the current app)."""
    return Celery("sagakit", set_as_current=False)


def build_task_message(app: Celery, message: Envelope, *, limit: int) -> TaskMessage:
    """The task message that carries ``message``, built by Celery itself
    (``app.amqp.as_task_v2``) and serialized by kombu's JSON serializer."""
    encode(message, limit=limit)  # the envelope's own size limit
    built = app.amqp.as_task_v2(
        message.id, task_name(message), args=[message.model_dump(mode="json")]
    )
    # kombu ships py.typed but leaves dumps unannotated
    content_type, encoding, data = kombu_dumps(  # type: ignore[no-untyped-call]
        built.body, serializer="json"
    )
    properties: dict[str, Any] = built.properties
    return TaskMessage(
        body=data.encode(encoding) if isinstance(data, str) else bytes(data),
        headers=dict(built.headers),
        content_type=content_type,
        content_encoding=encoding,
        correlation_id=properties.get("correlation_id"),
        reply_to=properties.get("reply_to") or None,
    )


def open_task(
    body: bytes,
    *,
    content_type: str | None,
    headers: Mapping[str, object],
    limit: int,
) -> Envelope | str:
    """The envelope in a task message, or why it goes to the DLQ unhandled."""
    try:
        return parse_task_message(
            body, content_type=content_type, headers=headers, limit=limit
        )
    except MalformedMessage as exc:
        return exc.reason
    except Exception as exc:  # json.dumps of args[0], say
        return f"undecodable: {exc!r}"


def read_dead_letter(
    queue: str, body: bytes, content_type: str | None, headers: Mapping[str, Any]
) -> DeadLetter:
    """The :class:`DeadLetter` of a task message on a dead-letter queue."""
    return DeadLetter(
        queue=queue,
        body=envelope_bytes(body, content_type),
        reason=text(headers.get(REASON_HEADER)),
        dead_at=dead_at(headers.get(DEAD_AT_HEADER)),
    )
