"""View models for the dashboard: store records turned into plain values.

Pure functions; nothing here touches HTTP or the store. The text comes from
:mod:`sagakit.views`, as in the CLI's renderers, so both show the same numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from sagakit.admin.driving import Driver
from sagakit.engine.state import ErrorInfo, SagaStatus
from sagakit.ports.store import HistoryEntry, SagaRecord
from sagakit.views.format import (
    age,
    clip,
    compensated_steps,
    definition_label,
    local_time,
    milliseconds,
    result_text,
    short_error,
    status_label,
    step_results,
    total_duration,
)

E = TypeVar("E", bound=Enum)

STATUSES: tuple[str, ...] = tuple(s.value for s in SagaStatus)
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
AGE_CHOICES: tuple[tuple[str, str], ...] = (
    ("", "any age"),
    ("15m", "newer than 15 min"),
    ("1h", "newer than 1 hour"),
    ("24h", "newer than 24 hours"),
    ("7d", "newer than 7 days"),
    (">1h", "older than 1 hour"),
    (">24h", "older than 24 hours"),
)
_AGE = re.compile(r"^\s*([<>]?)\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
ACTION_FOR_STATUS: dict[SagaStatus, str] = {
    SagaStatus.FAILED: "retry",
    SagaStatus.COMPENSATION_FAILED: "resume",
    SagaStatus.RUNNING: "cancel",
}
ACTION_LABELS = {
    "retry": "Retry",
    "resume": "Resume",
    "cancel": "Cancel saga",
    "pause": "Pause",
    "unpause": "Unpause",
}
ACTION_HELP = {
    "pause": "Start no new step (steps in flight finish and are recorded).",
    "unpause": "Go on where the saga stopped.",
    "retry": "Run the failed steps again (after fixing their cause).",
    "resume": "Retry the failed compensation and go on rolling back.",
    "cancel": "Stop going forward and compensate what completed "
    "(refused past the pivot).",
}


def actions_for(record: SagaRecord) -> list[str]:
    """The operator actions the saga's page offers (a paused saga: unpause)."""
    if record.state.paused and not record.status.terminal:
        return ["unpause"]  # a paused saga cannot be cancelled
    offered = ACTION_FOR_STATUS.get(record.status)
    actions = [] if offered is None else [offered]
    return actions if record.status.terminal else [*actions, "pause"]


class FilterError(ValueError):
    """A list filter the dashboard cannot read; the message says why."""


@dataclass(frozen=True, slots=True)
class AgeFilter:
    """Instances created less (``newer``) or more than ``seconds`` ago."""

    seconds: float
    newer: bool

    def keeps(self, record: SagaRecord, now: float) -> bool:
        elapsed = now - record.created_at
        return elapsed <= self.seconds if self.newer else elapsed > self.seconds


def parse_age(text: str | None) -> AgeFilter | None:
    """``15m``/``<15m`` (newer than), ``>2h`` (older than); units s, m, h, d."""
    if text is None or not text.strip():
        return None
    match = _AGE.match(text)
    if match is None:
        raise FilterError(
            f"invalid age {text!r}: use a number and a unit (s, m, h, d), "
            "e.g. 15m, or >2h for older than"
        )
    sign, number, unit = match.groups()
    return AgeFilter(float(number) * _UNITS[unit], newer=sign != ">")


def parse_enum(text: str | None, kind: type[E]) -> E | None:
    """A status filter: one of ``kind``'s values, in any case; blank is any."""
    if text is None or not text.strip():
        return None
    try:
        return kind(text.strip().lower())
    except ValueError:
        choices = ", ".join(str(member.value) for member in kind)
        raise FilterError(f"invalid status {text!r}: use one of {choices}") from None


def parse_status(text: str | None) -> SagaStatus | None:
    return parse_enum(text, SagaStatus)


def parse_limit(text: str | None) -> int:
    if text is None or not text.strip():
        return DEFAULT_LIMIT
    try:
        value = int(text)
    except ValueError:
        raise FilterError(f"invalid limit {text!r}: use a number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise FilterError(f"invalid limit {value}: use 1 to {MAX_LIMIT}")
    return value


@dataclass(frozen=True, slots=True)
class Counts:
    """Instances per status value, every status listed (``0`` for none)."""

    counts: dict[str, int]

    @classmethod
    def of(cls, found: Mapping[E, int], statuses: Iterable[E]) -> Counts:
        return cls({status.value: found.get(status, 0) for status in statuses})

    def as_json(self) -> dict[str, Any]:
        return {"counts": self.counts, "total": sum(self.counts.values())}


def as_text(value: Any) -> str:
    """A result or context value as one line of JSON (strings as they are)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def pretty_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def error_text(error: ErrorInfo | None) -> str:
    return "" if error is None else short_error(error)


@dataclass(frozen=True, slots=True)
class Row:
    """One saga in the list; ``driver`` is ``orphaned`` or ``unclaimed`` for
    an unfinished one that no process drives (``driver_text`` says why)."""

    saga_id: str
    saga_name: str
    status: str
    failed_step: str
    error: str
    created: str
    updated_ago: str
    driver: str = ""
    driver_text: str = ""
    parent: str = ""


def rows(
    records: Sequence[SagaRecord],
    now: float,
    drivers: Mapping[str, Driver] | None = None,
) -> list[Row]:
    found = drivers or {}
    out = []
    for r in records:
        driver = found.get(r.saga_id)
        idle = driver is not None and driver.idle
        parent = r.state.parent
        out.append(
            Row(
                saga_id=r.saga_id,
                saga_name=r.saga_name,
                status=status_label(r),
                failed_step=r.state.failed_step or "",
                error=clip(error_text(r.state.error), 80),
                created=local_time(r.created_at),
                updated_ago=f"{age(now - r.updated_at)} ago",
                driver=driver.state.value if driver is not None and idle else "",
                driver_text=driver.text if driver is not None and idle else "",
                parent="" if parent is None else parent.saga_id,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class TimelineLine:
    """One history line, as ``sagakit show`` prints it: start and end are ms
    from the saga start."""

    start_ms: str
    end_ms: str
    kind: str
    step: str
    attempt: str
    outcome: str
    duration_ms: str
    detail: str
    full_detail: str
    is_error: bool
    traceback: str


def timeline(record: SagaRecord, history: Sequence[HistoryEntry]) -> list[TimelineLine]:
    start = record.created_at
    lines = []
    for h in history:
        is_saga = h.kind == "saga"
        full = error_text(h.error) if h.error is not None else as_text(h.result)
        lines.append(
            TimelineLine(
                start_ms=milliseconds(h.started_at - start),
                end_ms=milliseconds(h.finished_at - start),
                kind=h.kind,
                step=h.step or "",
                attempt="" if is_saga else str(h.attempt),
                outcome=h.outcome,
                duration_ms="" if is_saga else milliseconds(h.duration),
                detail=clip(full),
                full_detail=full,
                is_error=h.error is not None,
                traceback=(h.error.traceback or "") if h.error is not None else "",
            )
        )
    return lines


@dataclass(frozen=True, slots=True)
class StepLine:
    """One step of the saga: its status and recorded result."""

    step: str
    status: str
    result: str
    full_result: str


def steps(record: SagaRecord) -> list[StepLine]:
    lines = []
    for name, status, result in step_results(record):
        full = result_text(result)
        lines.append(StepLine(name, status, clip(full), full))
    return lines


def steps_json(record: SagaRecord) -> dict[str, Any]:
    """Each step's status and result, as the JSON API returns them."""
    return {
        name: {"status": status, "result": result}
        for name, status, result in step_results(record)
    }


@dataclass(frozen=True, slots=True)
class Fact:
    label: str
    value: str
    css: str = ""


def header(record: SagaRecord, *, now: float | None = None) -> list[Fact]:
    """The key facts ``sagakit show`` puts above the timeline; for an
    unfinished saga, with ``now``, how long it has run and since when nothing
    changed (not the time between its creation and its last change)."""
    state = record.state
    facts = [
        Fact("saga", record.saga_name),
        Fact("id", record.saga_id, "mono"),
        Fact("status", status_label(record), f"status {status_label(record)}"),
        Fact("definition", definition_label(record), "mono"),
        Fact("created", local_time(record.created_at)),
        Fact("updated", local_time(record.updated_at)),
    ]
    if record.status.terminal or now is None:
        label = "duration" if record.status.terminal else "running for"
        facts.append(Fact(label, f"{milliseconds(total_duration(record))} ms"))
    else:
        facts.append(Fact("running for", age(now - record.created_at)))
        facts.append(Fact("last change", f"{age(now - record.updated_at)} ago"))
    if record.waiting is not None and not record.status.terminal:
        facts.insert(3, Fact("waiting", record.waiting, "error"))
    if record.idempotency_key is not None:
        facts.append(Fact("idempotency key", record.idempotency_key, "mono"))
    if state.failed_step is not None:
        facts.append(Fact("failed step", state.failed_step))
    if state.error is not None:
        facts.append(Fact("error", short_error(state.error), "error"))
    failures = state.compensation_errors
    if failures:
        facts.append(Fact("compensation failed", ", ".join(s for s, _ in failures)))
    for step, error in failures:
        label = "compensation error" if len(failures) == 1 else f"undo {step} error"
        facts.append(Fact(label, short_error(error), "error"))
    return facts


def summary(
    record: SagaRecord, history: Sequence[HistoryEntry], now: float | None = None
) -> str:
    """The one-line outcome ``sagakit demo`` prints, as plain text (for an
    unfinished saga, with ``now``: how long it has been running)."""
    state = record.state
    line = f"{record.status.value} in {milliseconds(total_duration(record))} ms"
    if now is not None and not record.status.terminal:
        line = f"{record.status.value} for {age(now - record.created_at)}"
    if record.status is SagaStatus.SUCCEEDED:
        refs = ", ".join(f"{k}={as_text(v)}" for k, v in state.results.items())
        return f"{line}: {refs}" if refs else line
    if state.failed_step is not None:
        error = "" if state.error is None else f" ({short_error(state.error)})"
        line += f": {state.failed_step} failed{error}"
        undone = compensated_steps(history)
        if undone:
            line += f"; undone: {', '.join(undone)}"
        if state.compensation_errors:
            failed = ", ".join(step for step, _ in state.compensation_errors)
            line += f"; compensating {failed} failed"
    return line


@dataclass(frozen=True, slots=True)
class Related:
    """A saga linked to the one shown: its parent (``saga`` and ``status``
    unknown: empty), or a sub-saga one of its steps ran."""

    step: str
    saga_id: str
    saga: str
    status: str


def parent_of(record: SagaRecord) -> Related | None:
    parent = record.state.parent
    return None if parent is None else Related(parent.step, parent.saga_id, "", "")


def children(records: Sequence[SagaRecord]) -> list[Related]:
    return [
        Related(
            r.state.parent.step if r.state.parent else "",
            r.saga_id,
            r.saga_name,
            status_label(r),
        )
        for r in records
    ]


def record_json(record: SagaRecord) -> dict[str, Any]:
    """A saga as the JSON API returns it."""
    state = record.state
    parent = state.parent
    return {
        "saga_id": record.saga_id,
        "saga": record.saga_name,
        "parent": None if parent is None else parent.to_dict(),
        "status": record.status.value,
        "version": record.version,
        "definition_version": record.definition_version,
        "fingerprint": record.fingerprint,
        "waiting": record.waiting,
        "paused": state.paused,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "failed_step": state.failed_step,
        "error": None if state.error is None else state.error.to_dict(),
        "compensation_step": state.compensation_step,
        "compensation_error": (
            None
            if state.compensation_error is None
            else state.compensation_error.to_dict()
        ),
        "compensation_errors": [
            {"step": step, "error": error.to_dict()}
            for step, error in state.compensation_errors
        ],
    }


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "step": entry.step,
        "kind": entry.kind,
        "attempt": entry.attempt,
        "outcome": entry.outcome,
        "started_at": entry.started_at,
        "finished_at": entry.finished_at,
        "duration": entry.duration,
        "result": entry.result,
        "error": None if entry.error is None else entry.error.to_dict(),
    }
