"""The store port: durable saga instances and their append-only step history."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus


@dataclass(frozen=True, slots=True)
class SagaRecord:
    """One saga instance as stored. ``version`` grows by one on every save."""

    saga_id: str
    saga_name: str
    status: SagaStatus
    version: int
    state: SagaState
    context: dict[str, Any]
    idempotency_key: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
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


class SagaStore(Protocol):
    """Durable saga state. Every method is one transaction.

    Implementations count their commits in ``commits`` so tests and benchmarks
    can check the write budget.
    """

    commits: int

    async def create(
        self, record: SagaRecord, history: Sequence[HistoryEntry]
    ) -> tuple[SagaRecord, bool]:
        """Insert a new instance; with an idempotency key already used by the same
        saga, insert nothing and return ``(existing, False)``."""

    async def save(
        self,
        record: SagaRecord,
        expected_version: int,
        history: Sequence[HistoryEntry],
    ) -> None:
        """Replace the instance if it is still at ``expected_version`` and append
        ``history``; raise ``ConcurrencyError`` otherwise (``SagaNotFound`` if
        it does not exist)."""

    async def get(self, saga_id: str) -> SagaRecord:
        """The instance, or ``SagaNotFound``."""

    async def history(self, saga_id: str) -> list[HistoryEntry]:
        """The timeline in the order it was written."""

    async def list_sagas(
        self,
        *,
        status: SagaStatus | None = None,
        saga_name: str | None = None,
        limit: int = 50,
    ) -> list[SagaRecord]:
        """Newest first."""

    async def unfinished(
        self, saga_names: Collection[str] | None = None, limit: int = 1000
    ) -> list[str]:
        """Ids of instances that are not in a terminal status, oldest first."""

    async def close(self) -> None: ...
