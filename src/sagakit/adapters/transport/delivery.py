"""The delivery rules every transport follows, in one place.

A transport hands over what it received, already opened into an envelope or
the reason it cannot be one (:func:`open_body` for bytes that should be an
envelope), with how many times it has been delivered, this time included.
:func:`deliver` runs the handler and returns the :class:`Verdict`: acknowledge
it (:data:`ACK`, the same object every time, so a handled message costs no
allocation), deliver it again (``deliveries`` set) or dead-letter it
(``reason`` set). The transport then settles the message its own way.

The rules:

- a message that cannot be decoded is dead-lettered, never handled;
- a handler raising :class:`~sagakit.messaging.envelope.MalformedMessage` says
  the message can never be valid: dead-lettered at once, with its reason;
- a handler raising anything else (``CancelledError`` included, unless the
  consuming task itself is being cancelled, which propagates) has failed: the
  message is delivered again, until its ``max_deliveries``-th delivery fails,
  which dead-letters it with ``handler failed N times: Error: text``;
- reasons are cut to :data:`MAX_REASON_CHARS` and logged once
  (:func:`dead_lettered`).

The header names are those of the AMQP and Celery transports (Redis Streams
keeps the same facts in fields of its dead-letter stream).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sagakit.messaging.envelope import Envelope, MalformedMessage, decode
from sagakit.ports.transport import Handler

DELIVERIES_HEADER = "x-sagakit-deliveries"
REASON_HEADER = "x-sagakit-reason"
DEAD_AT_HEADER = "x-sagakit-dead-at"
QUEUE_HEADER = "x-sagakit-queue"
DEAD_HEADERS = frozenset(
    {DELIVERIES_HEADER, REASON_HEADER, DEAD_AT_HEADER, QUEUE_HEADER}
)
"""Headers dropped when a dead letter is replayed."""
MAX_REASON_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Verdict:
    """How to settle a delivered message: acknowledge it (the default),
    dead-letter it with ``reason``, or deliver it again, counted as
    ``deliveries`` deliveries so far."""

    reason: str | None = None
    deliveries: int = 0


ACK = Verdict()
"""The verdict on a handled message."""


def cancelling() -> bool:
    """Whether this task is being cancelled (rather than a handler raising
    ``CancelledError`` on its own, which counts as a failed delivery)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def open_body(body: bytes, limit: int) -> Envelope | str:
    """The envelope ``body`` encodes, or why it goes to the DLQ unhandled."""
    try:
        return decode(body, limit=limit)
    except MalformedMessage as exc:
        return exc.reason
    except Exception as exc:  # json.loads: RecursionError on deep nesting
        return f"undecodable: {exc!r}"


def overdue(
    opened: Envelope | str, deliveries: int, max_deliveries: int
) -> Envelope | str:
    """``opened``, or a reason if it was delivered more than ``max_deliveries``
    times without being settled (its consumers kept dying)."""
    if deliveries > max_deliveries and not isinstance(opened, str):
        return f"not acknowledged after {deliveries - 1} deliveries"
    return opened


async def deliver(
    handler: Handler, opened: Envelope | str, deliveries: int, max_deliveries: int
) -> Verdict:
    """Call ``handler`` on the ``deliveries``-th delivery of ``opened``.

    Cancelling the calling task propagates; a handler raising
    ``CancelledError`` on its own has failed, like any other exception."""
    if isinstance(opened, str):
        return Verdict(reason=opened)
    try:
        await handler(opened)
    except asyncio.CancelledError as exc:
        if cancelling():
            raise
        failure: BaseException = exc  # raised by the handler itself
    except MalformedMessage as exc:  # the handler says: never valid, no retry
        return Verdict(reason=exc.reason)
    except Exception as exc:
        failure = exc
    else:
        return ACK
    if deliveries >= max_deliveries:
        return Verdict(
            reason=f"handler failed {deliveries} times: "
            f"{type(failure).__name__}: {failure}"
        )
    return Verdict(deliveries=deliveries)


def counted(headers: Mapping[str, Any]) -> int:
    """The deliveries counted in ``headers`` so far (0 when absent or nonsense)."""
    value = headers.get(DELIVERIES_HEADER)
    if isinstance(value, int) and not isinstance(value, bool):
        return max(value, 0)
    return 0


def dead_lettered(log: logging.Logger, queue: str, reason: str) -> str:
    """``reason`` cut to :data:`MAX_REASON_CHARS`, logged as dead-lettering a
    message of ``queue``."""
    reason = reason[:MAX_REASON_CHARS]
    log.warning(
        "message dead-lettered",
        extra={"action": "dead_lettered", "queue": queue, "reason": reason},
    )
    return reason


def requeued(log: logging.Logger, queue: str, deliveries: int) -> None:
    """Log that a failed message of ``queue`` goes to the end of its queue."""
    log.info(
        "handler failed, message requeued",
        extra={"action": "redelivered", "queue": queue, "deliveries": deliveries},
    )


def dead_letter_headers(
    log: logging.Logger, queue: str, headers: Mapping[str, Any], reason: str
) -> dict[str, Any]:
    """``headers`` of a message being dead-lettered from ``queue``, with the
    ``x-sagakit-*`` headers that say why and when (the reason is logged)."""
    return {
        **headers,
        REASON_HEADER: dead_lettered(log, queue, reason),
        DEAD_AT_HEADER: time.time(),
        QUEUE_HEADER: queue,
    }


def replay_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """``headers`` of a dead letter without the ``x-sagakit-*`` ones."""
    return {k: v for k, v in headers.items() if k not in DEAD_HEADERS}


def replayed(log: logging.Logger, queue: str, moved: int) -> int:
    """Log that ``moved`` dead letters of ``queue`` went back; returns ``moved``."""
    if moved:
        log.info(
            "dead letters replayed",
            extra={"action": "dead_letters_replayed", "queue": queue, "n": moved},
        )
    return moved


def text(value: object) -> str:
    """A header value as text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def dead_at(value: object) -> float:
    """The ``x-sagakit-dead-at`` header as a time (0 when absent)."""
    return float(value) if isinstance(value, int | float) else 0.0


def error_line(exc: BaseException) -> str:
    """A driver error in one line (``connection refused`` whatever the driver
    says, when that is what happened underneath)."""
    if _refused(exc):
        return "connection refused"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or (
            isinstance(seen, OSError) and seen.errno == errno.ECONNREFUSED
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return "connection refused" in str(exc).lower()
