"""The values a write carries besides the instance itself: the history
lines it appends, the outbox messages and the inbox entry it writes, and
the arguments of one create or save (:class:`Create`, :class:`Save`, as
:meth:`~sagakit.ports.store.GroupSaves.create_many` and ``save_many`` take
them).

Apart from :mod:`sagakit.ports.store`, which still exports every name here
(loaded on first read), so that a command that only reads instances
(``sagakit list``) does not build them: a frozen dataclass compiles its
methods when its module is imported, about 4.5M instructions each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagakit.errors import ErrorInfo
    from sagakit.ports.store import SagaRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxMessage:
    """An encoded message to publish once the transaction that wrote it commits.

    ``message_id`` is unique; writing the same id twice keeps the first.

    ``held_by`` with ``hold`` (seconds) writes the message already held by
    that publisher, as a claim would: the writer publishes it itself right
    after the commit, and other relays leave it alone until the hold expires
    (then it is theirs, as after a crash). Both or neither.
    """

    message_id: str
    destination: str
    body: bytes
    available_at: float
    saga_id: str | None = None
    held_by: str | None = None
    hold: float | None = None


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A consumed message: ``consumer`` names who consumed it."""

    consumer: str
    message_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One line of the step timeline.

    ``kind`` is ``saga``, ``action`` or ``compensation``; ``outcome`` is what
    happened (``started``, ``succeeded``, ``failed``, ``resumed``, or the final
    saga status for ``kind == "saga"``).
    """

    saga_id: str
    step: str | None
    kind: str
    attempt: int
    outcome: str
    started_at: float
    finished_at: float
    result: Any = None
    error: ErrorInfo | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.finished_at - self.started_at)


def saga_line(
    saga_id: str, outcome: str, at: float, result: Any = None
) -> HistoryEntry:
    """A history line about the whole saga (``kind == "saga"``), at ``at``."""
    return HistoryEntry(
        saga_id=saga_id,
        step=None,
        kind="saga",
        attempt=0,
        outcome=outcome,
        started_at=at,
        finished_at=at,
        result=result,
    )


@dataclass(frozen=True, slots=True)
class Save:
    """The arguments of one :meth:`SagaRepository.save`, as
    :meth:`GroupSaves.save_many` takes them."""

    record: SagaRecord
    expected_version: int
    history: Sequence[HistoryEntry]
    owner: str | None = None
    lease: float | None = None
    outbox: Sequence[OutboxMessage] = ()
    inbox: InboxEntry | None = None


@dataclass(frozen=True, slots=True)
class Create:
    """The arguments of one :meth:`SagaRepository.create`, as
    :meth:`GroupSaves.create_many` takes them."""

    record: SagaRecord
    history: Sequence[HistoryEntry]
    owner: str | None = None
    lease: float | None = None
    outbox: Sequence[OutboxMessage] = ()


__all__ = [
    "Create",
    "HistoryEntry",
    "InboxEntry",
    "OutboxMessage",
    "Save",
    "saga_line",
]
