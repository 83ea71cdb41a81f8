"""Store records and numbers as short text: pure functions, no I/O."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sagakit.errors import ErrorInfo
from sagakit.ports.store import SagaRecord
from sagakit.ports.workflow_status import WorkflowStatus

if TYPE_CHECKING:  # ``sagakit list`` (sagas alone) loads no workflow port
    from sagakit.ports.entry import HistoryEntry
    from sagakit.ports.workflow_store import WorkflowRecord

DETAIL_LIMIT = 120

WORKFLOW_STEP_LABELS = {
    WorkflowStatus.PENDING: "pending call",
    WorkflowStatus.RUNNING: "running step",
    WorkflowStatus.FAILED: "failed step",
}
"""What an instance's current step is called, by its status."""


def local_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: how long ago, roughly."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def relative(moment: float, now: float) -> str:
    """``in 5m`` or ``5m ago``: when ``moment`` is, seen from ``now``."""
    if moment > now:
        return f"in {age(moment - now)}"
    return f"{age(now - moment)} ago"


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def short_error(error: ErrorInfo) -> str:
    """``NoRoomsAvailable: no rooms ...``: the exception's own name, not its module."""
    name = error.type.rsplit(".", 1)[-1]
    return f"{name}: {error.message}" if error.message else name


def clip(text: str, limit: int = DETAIL_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compact_json(value: Any) -> str:
    """A value on one line: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def status_label(record: SagaRecord) -> str:
    """The status an operator sees: ``waiting`` for an unfinished instance
    that no process drives because its definition is missing or changed,
    ``running (paused)`` or ``compensating (paused)`` for a paused one."""
    if record.waiting is not None and not record.status.terminal:
        return "waiting"
    if record.state.paused and not record.status.terminal:
        return f"{record.status.value} (paused)"
    return record.status.value


def workflow_status_label(record: WorkflowRecord) -> str:
    """The status an operator sees: ``waiting`` for a pending instance no
    process that looked at it could run (its version or step is missing)."""
    return "waiting" if record.waiting else record.status.value


def definition_label(record: SagaRecord | WorkflowRecord) -> str:
    """``name vN``: the definition an instance runs on."""
    name = record.saga_name if isinstance(record, SagaRecord) else record.app
    return f"{name} v{record.definition_version}"


def definition_shape(record: SagaRecord | WorkflowRecord) -> str:
    """``name vN (shape F)``: the definition and fingerprint an instance
    started on (``unknown`` if it started before fingerprints were kept)."""
    return f"{definition_label(record)} (shape {record.fingerprint or 'unknown'})"


def total_duration(record: SagaRecord) -> float:
    return max(0.0, record.updated_at - record.created_at)


def step_results(record: SagaRecord) -> list[tuple[str, str, Any]]:
    """``(step, status, result)`` for each step in the saga's state: the
    results later steps read as ``results``."""
    return [(name, s.status.value, s.result) for name, s in record.state.steps.items()]


def result_text(value: Any) -> str:
    """A recorded result on one line; nothing for none."""
    return "" if value is None else compact_json(value)


def compensated_steps(history: Sequence[HistoryEntry]) -> list[str]:
    """Steps whose compensation succeeded (or, fire and forget, was sent),
    in the order they were undone."""
    return [
        h.step
        for h in history
        if h.kind == "compensation" and h.outcome in ("succeeded", "sent") and h.step
    ]


def timer(record: WorkflowRecord, now: float) -> str:
    """When a pending instance's call is due: ``in 5m``, ``2s ago`` (due and
    not run yet), or ``on call`` (it waits for an external event)."""
    if record.status is not WorkflowStatus.PENDING:
        return ""
    if record.due_at is None:
        return "on call"
    return relative(record.due_at, now)
