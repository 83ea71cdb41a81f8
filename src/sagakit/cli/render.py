"""Rich renderings of stored sagas: lists, headers, step timelines, summaries;
and of workflow instances: lists and reports.

Pure functions from store records to rich renderables; nothing here prints.
The text inside them (times, ages, errors, JSON) comes from
:mod:`sagakit.views`, which the dashboard uses too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from sagakit.cli.table import STATUS_STYLES, Listing, sagas
from sagakit.engine.state import SagaStatus
from sagakit.ports.workflow_status import WorkflowStatus
from sagakit.views.format import (
    WORKFLOW_STEP_LABELS,
    clip,
    compact_json,
    compensated_steps,
    definition_label,
    definition_shape,
    local_time,
    milliseconds,
    relative,
    result_text,
    short_error,
    status_label,
    step_results,
    timer,
    total_duration,
    workflow_status_label,
)

if TYPE_CHECKING:  # what `list` renders loads no workflow or choreography port
    from sagakit.ports.event_store import EventRecord, TrackedChoreography
    from sagakit.ports.store import HistoryEntry, SagaRecord
    from sagakit.ports.workflow_store import WorkflowHistoryEntry, WorkflowRecord

_KIND_STYLES = {
    "saga": "dim",
    "action": "",
    "compensation": "magenta",
    "cancel": "yellow",
}
_EVENT_DETAIL_STYLES = {"failed": "red", "waiting": "yellow"}


def styled(outcome: str) -> Text:
    """A status or outcome in its colour."""
    return Text(outcome, style=STATUS_STYLES.get(outcome, ""))


def _detail(entry: HistoryEntry) -> Text:
    if entry.error is not None:
        return Text(clip(short_error(entry.error)), style="red")
    if entry.result is None:
        return Text("")
    value: Any = entry.result
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return Text(clip(shown))


def rich_table(listing: Listing) -> Table:
    """``listing`` (:mod:`sagakit.cli.table`) as a rich table: coloured,
    and fitted to the console's width by wrapping the columns that may."""
    # the title as rich styles a string one (italic), but never read as markup
    title = Text(listing.title, style="table.title")
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(listing.columns):
        widest = max((cell_len(row[i][0]) for row in listing.rows), default=2)
        table.add_column(
            column.name,
            no_wrap=not column.wrap,
            justify="right" if column.right else "left",
            style=column.style,
            min_width=widest if column.whole else None,
        )
    for row in listing.rows:
        table.add_row(*(Text(text, style=style) for text, style in row))
    return table


def sagas_table(
    records: Sequence[SagaRecord], now: float, matching: str | None = None
) -> Table:
    """The ``sagakit list`` table (:func:`sagakit.cli.table.sagas`) in rich."""
    return rich_table(sagas(records, now, matching))


def saga_header(record: SagaRecord, children: Sequence[SagaRecord] = ()) -> Table:
    """Key facts of one saga: what, when, how long, what went wrong, and
    the sagas it is linked to (its parent, the sub-sagas it ran)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("saga", record.saga_name)
    grid.add_row("id", record.saga_id)
    grid.add_row("status", styled(status_label(record)))
    parent = record.state.parent
    if parent is not None:
        grid.add_row("parent", f"{parent.saga_id} (step {parent.step})")
    for child in children:
        step = child.state.parent.step if child.state.parent else "?"
        line = Text(f"{child.saga_id} ({child.saga_name}) ")
        line.append_text(styled(status_label(child)))
        grid.add_row(f"sub-saga {step}", line)
    if record.waiting is not None and not record.status.terminal:
        grid.add_row("waiting", Text(record.waiting, style="bold yellow"))
    grid.add_row("definition", definition_shape(record))
    grid.add_row("created", local_time(record.created_at))
    label = "duration" if record.status.terminal else "running for"
    grid.add_row(label, f"{milliseconds(total_duration(record))} ms")
    state = record.state
    if state.failed_step is not None:
        grid.add_row("failed step", state.failed_step)
    if state.error is not None:
        grid.add_row("error", Text(short_error(state.error), style="red"))
    failures = state.compensation_errors
    if failures:
        grid.add_row("compensation failed", ", ".join(step for step, _ in failures))
    for step, error in failures:
        label = "compensation error" if len(failures) == 1 else f"undo {step} error"
        grid.add_row(label, Text(short_error(error), style="bold red"))
    return grid


def steps_table(record: SagaRecord) -> Table:
    """Each step of the saga, its status and its recorded result."""
    table = Table(title="steps", title_justify="left")
    table.add_column("step", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("result", overflow="fold")
    for name, status, result in step_results(record):
        table.add_row(name, styled(status), clip(result_text(result)))
    return table


def timeline_table(record: SagaRecord, history: Sequence[HistoryEntry]) -> Table:
    """The step timeline: one row per history line, in the order they were
    written (so by completion); start and end are ms from the saga start."""
    start = record.created_at
    table = Table(title="timeline", title_justify="left")
    table.add_column("start", justify="right", no_wrap=True)
    table.add_column("end", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("step", no_wrap=True)
    table.add_column("try", justify="right")
    table.add_column("outcome", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("result / error", overflow="fold")
    for h in history:
        is_saga = h.kind == "saga"
        table.add_row(
            milliseconds(h.started_at - start),
            milliseconds(h.finished_at - start),
            Text(h.kind, style=_KIND_STYLES.get(h.kind, "")),
            h.step or "",
            "" if is_saga else str(h.attempt),
            styled(h.outcome),
            "" if is_saga else milliseconds(h.duration),
            _detail(h),
        )
    return table


def audit_table(history: Sequence[HistoryEntry]) -> Table | None:
    """The operator actions in the history (the audit trail): when, who,
    what, on which step, why and what it changed; None if there are none."""
    from sagakit.views.audit import audit_lines

    lines = audit_lines(history)
    if not lines:
        return None
    table = Table(title="operator actions", title_justify="left")
    table.add_column("time", no_wrap=True)
    table.add_column("by", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("step", no_wrap=True)
    table.add_column("reason", overflow="fold")
    table.add_column("changed", overflow="fold")
    for line in lines:
        table.add_row(
            line.when, line.by, line.action, line.step, line.reason, line.what
        )
    return table


def summary(record: SagaRecord, history: Sequence[HistoryEntry]) -> Text:
    """One line: the outcome, how long it took, and what it left behind."""
    status = record.status
    line = Text()
    line.append(f"{record.saga_name} {record.saga_id} ", style="bold")
    line.append_text(styled(status.value))
    line.append(f" in {milliseconds(total_duration(record))} ms")
    state = record.state
    if status is SagaStatus.SUCCEEDED:
        refs = ", ".join(f"{k}={v}" for k, v in state.results.items())
        line.append(f": {refs}" if refs else "")
    elif state.failed_step is not None:
        error = "" if state.error is None else f" ({short_error(state.error)})"
        line.append(f": {state.failed_step} failed{error}")
        undone = compensated_steps(history)
        if undone:
            line.append(f"; undone: {', '.join(undone)}")
        if state.compensation_errors:
            failed = ", ".join(step for step, _ in state.compensation_errors)
            line.append(f"; compensating {failed} failed", style="bold red")
    return line


def saga_report(
    record: SagaRecord,
    history: Sequence[HistoryEntry],
    children: Sequence[SagaRecord] = (),
) -> RenderableType:
    """Header, steps, timeline and operator actions, as ``sagakit show``
    prints them."""
    audit = audit_table(history)
    return Group(
        saga_header(record, children),
        Text(""),
        steps_table(record),
        Text(""),
        timeline_table(record, history),
        *(() if audit is None else (Text(""), audit)),
    )


def choreography_report(
    correlation_id: str,
    tracked: TrackedChoreography | None,
    timeline: Sequence[EventRecord],
) -> RenderableType:
    """A choreography's status and its event timeline, as ``sagakit show``
    prints them for a correlation id; ms are from the first line."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    names = {r.choreography for r in timeline if r.choreography}
    name = tracked.name if tracked else ", ".join(sorted(names)) or "(undeclared)"
    grid.add_row("choreography", name)
    grid.add_row("correlation id", correlation_id)
    if tracked is not None:
        shape = tracked.fingerprint or "unknown"
        grid.add_row(
            "definition",
            f"{tracked.name} v{tracked.definition_version} (shape {shape})",
        )
        grid.add_row("status", styled(tracked.status.value))
        grid.add_row("started", local_time(tracked.started_at))
        grid.add_row("last progress", local_time(tracked.updated_at))
        grid.add_row("deadline", local_time(tracked.deadline))
    start = timeline[0].recorded_at if timeline else 0.0
    table = Table(title="events", title_justify="left")
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("time", no_wrap=True)
    table.add_column("service", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("message", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for r in timeline:
        table.add_row(
            milliseconds(r.recorded_at - start),
            local_time(r.recorded_at),
            r.service,
            r.event_type,
            styled(r.outcome.value),
            r.message_id,
            Text(clip(r.detail or ""), style=_EVENT_DETAIL_STYLES.get(r.outcome, "")),
        )
    return Group(grid, Text(""), table)


# -- workflow instances ----------------------------------------------------


_NO_WRAP = frozenset({"status", "due", "created"})


def listing(title: str, ids: Sequence[str], columns: Sequence[str]) -> Table:
    """An empty ``list`` table: a bold id column as wide as the longest id,
    then ``columns`` (``status``, ``due`` and ``created`` never wrap;
    ``updated`` is right-aligned)."""
    table = Table(title=title, title_justify="left")
    width = max((len(i) for i in ids), default=2)
    table.add_column("id", no_wrap=True, min_width=width, style="bold")
    for name in columns:
        table.add_column(
            name,
            no_wrap=name in _NO_WRAP,
            justify="right" if name == "updated" else "left",
        )
    return table


def workflows_table(
    records: Sequence[WorkflowRecord],
    counts: Mapping[WorkflowStatus, int],
    now: float,
) -> Table:
    """The ``sagakit workflows list`` table, newest first; the title counts
    every instance per status."""
    total = sum(counts.values())
    per_status = ", ".join(
        f"{counts[s]} {s.value}" for s in WorkflowStatus if counts.get(s)
    )
    title = f"{len(records)} of {total} workflow instance(s)"
    table = listing(
        f"{title}: {per_status}" if per_status else title,
        [r.instance_id for r in records],
        ["app", "status", "step", "due", "updated"],
    )
    for r in records:
        table.add_row(
            r.instance_id,
            r.app if r.definition_version == 1 else definition_label(r),
            styled(workflow_status_label(r)),
            r.step or "",
            timer(r, now),
            relative(r.updated_at, now),
        )
    return table


def workflow_header(record: WorkflowRecord, now: float) -> Table:
    """Key facts of one instance: what, when, its pending call and its timer."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("app", record.app)
    grid.add_row("id", record.instance_id)
    grid.add_row("status", styled(workflow_status_label(record)))
    grid.add_row("definition", definition_shape(record))
    grid.add_row("created", local_time(record.created_at))
    updated = f"{local_time(record.updated_at)} ({relative(record.updated_at, now)})"
    grid.add_row("updated", updated)
    grid.add_row("steps done", str(record.transitions))
    label = WORKFLOW_STEP_LABELS.get(record.status)
    if label is not None and record.step is not None:
        grid.add_row(label, record.step)
        grid.add_row("input", compact_json(record.input))
        if record.attempts:
            grid.add_row("attempts", str(record.attempts))
    if record.status is WorkflowStatus.PENDING:
        due = (
            "when called (an external event)"
            if record.due_at is None
            else f"{local_time(record.due_at)} ({relative(record.due_at, now)})"
        )
        grid.add_row("due", due)
    if record.status is WorkflowStatus.RUNNING and record.owner is not None:
        lease = "" if record.lease_until is None else local_time(record.lease_until)
        grid.add_row("worker", f"{record.owner} (lease until {lease})")
    if record.error is not None:
        grid.add_row("error", Text(record.error, style="red"))
    return grid


def workflow_history_table(history: Sequence[WorkflowHistoryEntry]) -> Table:
    """An instance's history, one row per line, in the order written."""
    table = Table(title="history", title_justify="left")
    table.add_column("time", no_wrap=True)
    table.add_column("step", no_wrap=True)
    table.add_column("try", justify="right")
    table.add_column("outcome", no_wrap=True)
    table.add_column("detail / error", overflow="fold")
    for h in history:
        if h.error is not None:
            detail = Text(clip(h.error), style="red")
        else:
            detail = Text("" if h.detail is None else clip(compact_json(h.detail)))
        table.add_row(
            local_time(h.recorded_at),
            h.step or "",
            str(h.attempt),
            styled(h.outcome),
            detail,
        )
    return table


def workflow_report(
    record: WorkflowRecord, history: Sequence[WorkflowHistoryEntry], now: float
) -> RenderableType:
    """Header, result (of a succeeded instance), state and history, as
    ``sagakit workflows show`` prints them."""
    parts: list[RenderableType] = [workflow_header(record, now), Text("")]
    if record.status is WorkflowStatus.SUCCEEDED:
        parts += [Text("result", style="bold"), Text(_pretty(record.result)), Text("")]
    parts += [
        Text("state", style="bold"),
        Text(_pretty(record.state)),
        Text(""),
        workflow_history_table(history),
    ]
    return Group(*parts)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
