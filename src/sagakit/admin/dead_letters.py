"""Dead letters, read and replayed (the API behind ``sagakit dlq``,
exported by :mod:`sagakit.admin`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sagakit.admin import Progress
from sagakit.errors import SagaError

if TYPE_CHECKING:  # the readings load no transport
    from sagakit.ports.transport import DeadLetter, Transport

logger = logging.getLogger("sagakit.admin")

REPLAY_BATCH = 10
"""Dead letters moved per transport call by :func:`replay_dead_letters`."""


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    """A dead letter and what its body says, if it decodes as an envelope."""

    letter: DeadLetter
    message_type: str | None
    message_id: str | None
    saga_id: str | None

    @property
    def payload(self) -> Any:
        """The envelope's payload, or ``None`` for an undecodable body."""
        from sagakit.messaging.envelope import decode  # noqa: PLC0415 - see top

        try:
            return decode(self.letter.body).payload
        except Exception:  # the body is whatever was dead-lettered
            return None


def describe(letter: DeadLetter) -> DeadLetterInfo:
    """What a dead letter's body says (``None`` fields if it is not an envelope)."""
    from sagakit.messaging.envelope import decode  # noqa: PLC0415 - see top

    try:
        message = decode(letter.body)
    except Exception:  # undecodable is why many letters are dead
        return DeadLetterInfo(letter, None, _raw_id(letter.body), None)
    return DeadLetterInfo(letter, message.type, message.id, message.saga_id)


def _raw_id(body: bytes) -> str | None:
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return None
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


async def has_queue(transport: Transport, queue: str) -> bool | None:
    """Whether the broker has ``queue`` (or its dead-letter queue), looked
    up without creating it; None when the transport cannot tell (see
    :class:`~sagakit.ports.transport.QueueLookup`)."""
    from sagakit.ports.transport import QueueLookup  # noqa: PLC0415 - see top

    if isinstance(transport, QueueLookup):
        return await transport.has_queue(queue)
    return None


async def dead_letters(
    transport: Transport, queue: str, *, limit: int = 100
) -> list[DeadLetterInfo]:
    """Dead letters of ``queue``, oldest first (left where they are)."""
    if limit < 1:
        raise SagaError(f"limit must be at least 1, got {limit}")
    return [describe(d) for d in await transport.dead_letters(queue, limit)]


async def replay_dead_letters(
    transport: Transport,
    queue: str,
    *,
    limit: int = 100,
    progress: Progress | None = None,
) -> int:
    """Move up to ``limit`` dead letters back to ``queue``, oldest first (fix
    the handler first); returns how many moved. ``progress(done, total)``
    follows the batches; ``total`` is what was dead when the replay began."""
    if limit < 1:
        raise SagaError(f"limit must be at least 1, got {limit}")
    total = len(await transport.dead_letters(queue, limit))
    moved = 0
    while moved < total:
        got = await transport.replay_dead_letters(
            queue, min(REPLAY_BATCH, total - moved)
        )
        if got == 0:
            break  # someone else replayed or took them meanwhile
        moved += got
        if progress is not None:
            progress(moved, total)
    logger.info(
        "dead letters replayed",
        extra={"action": "dlq_replayed", "queue": queue, "moved": moved},
    )
    return moved
