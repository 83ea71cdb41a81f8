"""The dashboard's workflow pages: the instances of workflow-style sagas
(:class:`~sagakit.workflow.WorkflowApp`), as ``sagakit workflows list|show``
shows them. Read-only: there are no workflow actions.

The workflow store is the one given to ``create_app``, or else the workflow
tables of the saga store, on its connection (as ``sagakit workflows`` opens
them). A database without them gets a page that says so, and the JSON API a
404 with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from sagakit.adapters.store import migrated_workflow_store
from sagakit.dashboard.page import Flash, Pages, root_of, workflow_url
from sagakit.dashboard.views import (
    DEFAULT_LIMIT,
    Counts,
    Fact,
    FilterError,
    parse_enum,
    parse_limit,
    pretty_json,
)
from sagakit.errors import SagaNotFound, StoreError
from sagakit.ports.clock import Clock
from sagakit.ports.store import SagaStore
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowStatus,
    WorkflowStore,
)
from sagakit.views.format import (
    WORKFLOW_STEP_LABELS,
    clip,
    compact_json,
    definition_label,
    definition_shape,
    local_time,
    relative,
    timer,
    workflow_status_label,
)

WORKFLOW_STATUSES: tuple[str, ...] = tuple(s.value for s in WorkflowStatus)
SECTION = "workflows"


class NoWorkflows(Exception):
    """The database keeps no workflow instances the dashboard can read."""


class WorkflowSource:
    """The workflow store: as given, or found on the saga store's connection
    when a page first needs it (and looked for again while it is missing, so
    migrating the database under a running dashboard is enough)."""

    def __init__(self, store: SagaStore, workflows: WorkflowStore | None) -> None:
        self.store = store
        self.found = workflows

    async def get(self) -> WorkflowStore:
        if self.found is None:
            try:
                self.found = await migrated_workflow_store(self.store)
            except StoreError as exc:
                raise NoWorkflows(f"this database {exc}") from None
        return self.found


@dataclass(frozen=True, slots=True)
class WorkflowFilters:
    """What the workflow list shows: ``""`` means any."""

    status: str = ""
    app: str = ""
    limit: int = DEFAULT_LIMIT


def filters_of(request: Request) -> WorkflowFilters:
    q = request.query_params
    return WorkflowFilters(
        status=(q.get("status") or "").strip().lower(),
        app=(q.get("app") or "").strip(),
        limit=parse_limit(q.get("limit")),
    )


# -- view models -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    """One instance in the list."""

    url: str
    instance_id: str
    app: str
    status: str
    step: str
    due: str
    updated: str
    error: str


def rows(
    request: Request, records: Sequence[WorkflowRecord], now: float
) -> list[WorkflowRow]:
    return [
        WorkflowRow(
            url=workflow_url(request, r.app, r.instance_id),
            instance_id=r.instance_id,
            app=r.app if r.definition_version == 1 else definition_label(r),
            status=workflow_status_label(r),
            step=r.step or "",
            due=timer(r, now),
            updated=relative(r.updated_at, now),
            error=r.error or "",
        )
        for r in records
    ]


def facts(record: WorkflowRecord, now: float) -> list[Fact]:
    """What ``sagakit workflows show`` puts above the state and history."""
    status = record.status
    shown_status = workflow_status_label(record)
    shown = [
        Fact("app", record.app),
        Fact("id", record.instance_id, "mono"),
        Fact("status", shown_status, f"status {shown_status}"),
        Fact("definition", definition_shape(record), "mono"),
        Fact("created", local_time(record.created_at)),
        Fact(
            "updated",
            f"{local_time(record.updated_at)} ({relative(record.updated_at, now)})",
        ),
        Fact("steps done", str(record.transitions)),
    ]
    label = WORKFLOW_STEP_LABELS.get(status)
    if label is not None and record.step is not None:
        shown.append(Fact(label, record.step))
        if record.attempts:
            shown.append(Fact("attempts", str(record.attempts)))
    if status is WorkflowStatus.PENDING:
        due = "when called (an external event)"
        if record.due_at is not None:
            due = f"{local_time(record.due_at)} ({relative(record.due_at, now)})"
        shown.append(Fact("due", due))
    if status is WorkflowStatus.RUNNING and record.owner is not None:
        until = "" if record.lease_until is None else local_time(record.lease_until)
        shown.append(Fact("worker", f"{record.owner} (lease until {until})", "mono"))
    if record.error is not None:
        shown.append(Fact("error", record.error, "error"))
    return shown


@dataclass(frozen=True, slots=True)
class HistoryLine:
    """One history line, as ``sagakit workflows show`` prints it."""

    time: str
    step: str
    attempt: str
    outcome: str
    detail: str
    full_detail: str
    is_error: bool


def history_lines(history: Sequence[WorkflowHistoryEntry]) -> list[HistoryLine]:
    lines = []
    for h in history:
        full = h.error or ("" if h.detail is None else compact_json(h.detail))
        lines.append(
            HistoryLine(
                time=local_time(h.recorded_at),
                step=h.step or "",
                attempt=str(h.attempt),
                outcome=h.outcome,
                detail=clip(full),
                full_detail=full,
                is_error=h.error is not None,
            )
        )
    return lines


def record_json(record: WorkflowRecord, *, full: bool = False) -> dict[str, Any]:
    """An instance as the JSON API returns it: every stored field, the input,
    state and result only when ``full``."""
    data = asdict(record)
    if not full:
        del data["input"], data["state"], data["result"]
    return data


# -- handlers --------------------------------------------------------------


class WorkflowViews:
    """``/workflows``, ``/workflows/{app}/{id}`` and their JSON twins."""

    def __init__(self, source: WorkflowSource, pages: Pages, clock: Clock) -> None:
        self.source = source
        self.pages = pages
        self.clock = clock

    async def _find(
        self, app: str, instance_id: str
    ) -> tuple[WorkflowStore, WorkflowRecord]:
        """``NoWorkflows`` or ``SagaNotFound`` when it cannot be shown."""
        store = await self.source.get()
        return store, await store.get(app, instance_id)

    async def index(self, request: Request) -> HTMLResponse:
        try:
            store = await self.source.get()
        except NoWorkflows as exc:
            return self.pages.render(
                request, "workflows.html", {"missing": str(exc), "section": SECTION}
            )
        flashes: list[Flash] = []
        status_code = 200
        try:
            filters = filters_of(request)
            records = await store.list_workflows(
                status=parse_enum(filters.status, WorkflowStatus),
                app=filters.app or None,
                limit=filters.limit,
            )
        except FilterError as exc:
            filters, records, status_code = WorkflowFilters(), [], 400
            flashes.append(Flash("error", str(exc)))
        found = await store.count_workflows_by_status(filters.app or None)
        return self.pages.render(
            request,
            "workflows.html",
            {
                "missing": "",
                "section": SECTION,
                "filters": filters,
                "rows": rows(request, records, self.clock.now()),
                "counts": Counts.of(found, WorkflowStatus),
                "workflow_statuses": WORKFLOW_STATUSES,
            },
            status_code=status_code,
            flashes=flashes,
        )

    async def show(self, request: Request, app: str, instance_id: str) -> Response:
        try:
            store, record = await self._find(app, instance_id)
        except (NoWorkflows, SagaNotFound) as exc:
            back = f"{root_of(request)}/workflows"
            return self.pages.error(request, 404, str(exc), back, section=SECTION)
        history = await store.history(record.app, record.instance_id)
        return self.pages.render(
            request,
            "workflow.html",
            {
                "section": SECTION,
                "record": record,
                "shown_status": workflow_status_label(record),
                "facts": facts(record, self.clock.now()),
                "call_input": None
                if record.step is None
                else pretty_json(record.input),
                "state_json": pretty_json(record.state),
                "result_json": pretty_json(record.result)
                if record.status is WorkflowStatus.SUCCEEDED
                else None,
                "history": history_lines(history),
                "workflow_url": workflow_url(request, record.app, record.instance_id),
            },
        )

    async def counts(self, app: str | None = None) -> JSONResponse:
        try:
            store = await self.source.get()
        except NoWorkflows as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        found = await store.count_workflows_by_status(app or None)
        return JSONResponse(Counts.of(found, WorkflowStatus).as_json())

    async def api_list(self, request: Request) -> JSONResponse:
        try:
            store = await self.source.get()
            filters = filters_of(request)
            status = parse_enum(filters.status, WorkflowStatus)
        except NoWorkflows as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        except FilterError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        records = await store.list_workflows(
            status=status, app=filters.app or None, limit=filters.limit
        )
        return JSONResponse({"workflows": [record_json(r) for r in records]})

    async def api_show(self, app: str, instance_id: str) -> JSONResponse:
        try:
            store, record = await self._find(app, instance_id)
        except (NoWorkflows, SagaNotFound) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        history = await store.history(record.app, record.instance_id)
        return JSONResponse(
            record_json(record, full=True) | {"history": [asdict(h) for h in history]}
        )


__all__ = ["NoWorkflows", "WorkflowSource", "WorkflowViews"]
