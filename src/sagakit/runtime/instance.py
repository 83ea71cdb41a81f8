"""What the runtime keeps in memory for one saga instance it drives."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from sagakit.definition.saga import Saga
from sagakit.engine.events import Event
from sagakit.engine.state import SagaState
from sagakit.ports.store import HistoryEntry, InboxEntry, SagaRecord
from sagakit.runtime.executor import StepOutcome
from sagakit.runtime.owners import default_worker_id
from sagakit.runtime.result import SagaResult

__all__ = ["REPLY_CONSUMER", "Delivery", "Instance", "LeaseLost", "default_worker_id"]

REPLY_CONSUMER = "sagakit.orchestrator"
"""Inbox consumer name under which orchestrators record the replies they took."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event that came from outside (a reply, a deadline): it carries the
    inbox entry to record with it, and a future resolved once it is handled."""

    event: Event
    entries: list[HistoryEntry]
    inbox: InboxEntry | None
    handled: asyncio.Future[None]
    strict: bool = False
    """An operator's request: a refusal is reported to the caller, not dropped."""


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """Put on the queue of an instance whose lease another worker took, when
    the driver is a ``run()`` caller's own task (not cancelled: it goes on
    to follow the saga in the store)."""


@dataclass(eq=False)
class Instance:
    """An instance driven here: its engine state, context and work queue."""

    saga: Saga[Any]
    state: SagaState
    context: BaseModel
    version: int
    created_at: float
    idempotency_key: str | None
    done: asyncio.Future[SagaResult[Any]] | None = None
    exceptions: dict[str, BaseException] = field(default_factory=dict)
    queue: asyncio.Queue[StepOutcome | Delivery | LeaseLost] = field(
        default_factory=asyncio.Queue
    )
    in_flight: int = 0
    driver: asyncio.Task[None] | None = None
    parked: bool = False
    """Only waiting for replies or deadlines: nothing runs here for it."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    pending_history: list[HistoryEntry] = field(default_factory=list)
    trace: dict[str, str] | None = None
    """The saga's trace carrier for the observer (None: not loaded yet)."""
    caller_driven: bool = False
    """Driven by a ``run()`` caller's task, which must never be cancelled."""
    finished_elsewhere: bool = False
    """Another worker ended it (found on reload): report nothing again."""
    lost: bool = False
    """Another worker took its lease (the warning was logged once)."""
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    """The task of each local forward step running here in the background."""
    cancelled: set[str] = field(default_factory=set)
    """Steps whose run a fail-fast group cancelled (see ``runtime.cancel``)."""
    watchers: dict[tuple[str, str, int], asyncio.Task[None]] = field(
        default_factory=dict
    )
    """The task watching each sub-saga step's child, by (step, action or
    compensation, attempt) (see ``runtime.subsaga``)."""

    @classmethod
    def from_record(cls, saga: Saga[Any], record: SagaRecord) -> Instance:
        """The instance as the store has it (to drive it here)."""
        return cls(
            saga=saga,
            state=record.state,
            context=saga.context.model_validate(record.context),
            version=record.version,
            created_at=record.created_at,
            idempotency_key=record.idempotency_key,
        )
