"""What the runtime keeps in memory for one saga instance it drives."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from sagakit.definition.saga import Saga
from sagakit.engine.commands import Command, Compensate, RunStep
from sagakit.engine.events import Event
from sagakit.engine.state import SagaState
from sagakit.engine.status import SagaStatus
from sagakit.errors import StoreError
from sagakit.observability.observer import Observer, trace_of
from sagakit.ports.store import HistoryEntry, InboxEntry, SagaRecord, SagaStore
from sagakit.runtime.executor import StepOutcome
from sagakit.runtime.owners import default_worker_id
from sagakit.runtime.result import SagaResult

__all__ = [
    "REPLY_CONSUMER",
    "Delivery",
    "Instance",
    "Item",
    "LeaseLost",
    "Refresh",
    "default_worker_id",
    "report_finished",
    "stored_trace",
    "work_key",
]

REPLY_CONSUMER = "sagakit.orchestrator"
"""Inbox consumer name under which orchestrators record the replies they took."""

_MODEL_DUMP = BaseModel.model_dump


def context_json(context: BaseModel) -> dict[str, Any]:
    """``context.model_dump(mode="json")``, as stored with every commit.

    A model that keeps pydantic's ``model_dump`` is serialized by its
    serializer directly (whose defaults are ``model_dump``'s): the same dict,
    without the wrapper's cost, most of the call for a small context. One
    that overrides ``model_dump`` gets its own."""
    kind = type(context)
    if kind.model_dump is not _MODEL_DUMP:
        return context.model_dump(mode="json")
    dumped: dict[str, Any] = kind.__pydantic_serializer__.to_python(
        context, mode="json"
    )
    return dumped


logger = logging.getLogger("sagakit.runtime.orchestrator")


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


@dataclass(frozen=True, slots=True)
class Refresh:
    """Put on the queue of a paused instance parked here when the store has a
    newer version of it: an operator changed it from another process (an
    unpause), so it is reloaded and goes on."""


Item = StepOutcome | Delivery | LeaseLost | Refresh
"""What an instance's queue carries to its driving task."""


def work_key(command: RunStep | Compensate) -> tuple[str, str]:
    """``("action" | "compensation", step)``: a local run, as
    :attr:`Instance.running` counts it."""
    kind = "action" if isinstance(command, RunStep) else "compensation"
    return kind, command.step


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
    queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)
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
    running: set[tuple[str, str]] = field(default_factory=set)
    """The local steps and compensations started here whose outcome is not
    applied yet (see :func:`work_key`)."""
    visiting: bool = False
    """Loaded only to commit an operator's request while another live driver
    holds the lease: its commit leaves that lease alone."""
    owed: dict[tuple[str, str], Command] = field(default_factory=dict)
    """Local work a reload found issued but not running here (an unpause
    committed by another process): the driver starts it next."""
    resent: dict[tuple[str, str, int], int] = field(default_factory=dict)
    """Remote commands sent again from here because their reply was late:
    how many times, by (step, action or compensation, attempt) (see
    ``runtime.resend``)."""
    step_tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
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


async def stored_trace(store: SagaStore, saga_id: str) -> dict[str, str]:
    """The trace carrier stored when the saga started (for the observer)."""
    try:
        return trace_of(await store.history(saga_id))
    except StoreError:
        return {}  # tracing must not stop a saga: its spans start a new trace


def report_finished(observer: Observer, inst: Instance) -> None:
    """Log and report that ``inst`` ended here. A rolled-back saga is an
    expected business outcome; the other two endings need an operator."""
    state = inst.state
    attention = state.status in (SagaStatus.FAILED, SagaStatus.COMPENSATION_FAILED)
    logger.log(
        logging.WARNING if attention else logging.INFO,
        "saga finished",
        extra={
            "action": "saga_finished",
            "saga_id": state.saga_id,
            "saga": state.saga_name,
            "status": state.status.value,
            "failed_step": state.failed_step,
        },
    )
    observer.saga_finished(
        state.saga_name,
        state.saga_id,
        state.status.value,
        state.failed_step,
        inst.trace,
    )
