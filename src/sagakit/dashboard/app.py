"""The dashboard's FastAPI application: views over the store port, and
operator actions that reuse the CLI's library calls.

Pages are rendered on the server with Jinja2 (autoescaped); a small script
polls ``/api/counts`` (``/api/workflow-counts`` on the workflow list) to keep
the status counts live. Every response carries a strict
Content-Security-Policy (no inline script), so even a value that escaped
escaping could not run. The list and its search live in :mod:`.listing`,
a choreography's page in :mod:`.choreographies`, the workflow pages in
:mod:`.workflows`; the saga page's pictures are laid out in :mod:`.charts`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.base import RequestResponseEndpoint

from sagakit import __version__, admin
from sagakit.dashboard import charts, views
from sagakit.dashboard.actions import DONE, ActionRoutes, Operator
from sagakit.dashboard.auth import TokenGuard
from sagakit.dashboard.choreographies import (
    ChoreographyViews,
    EventSource,
    choreography_url,
)
from sagakit.dashboard.driving import Driver, driver_of
from sagakit.dashboard.listing import ListViews, status_counts
from sagakit.dashboard.page import Flash, Pages, saga_url
from sagakit.dashboard.workflows import WorkflowSource, WorkflowViews
from sagakit.definition.saga import Saga
from sagakit.errors import SagaNotFound
from sagakit.ports.clock import Clock, SystemClock
from sagakit.ports.store import SagaRecord, SagaStore
from sagakit.ports.workflow_store import WorkflowStore
from sagakit.runtime.operator import ACTIONS

__all__ = ["CSP", "create_app", "status_counts"]

CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_STATIC = Path(__file__).parent / "static"


@dataclass(eq=False)
class Views:
    """The saga page and its JSON twin."""

    store: SagaStore
    ops: Operator
    pages: Pages
    clock: Clock
    events: EventSource
    worker_hint: str | None = None
    """What ``sagakit worker`` takes to run these sagas (the ``--sagas``
    module), for the page to say how to start one."""

    async def driver(self, record: SagaRecord) -> Driver:
        if record.status.terminal:
            return driver_of(record, None)
        leases = await self.store.leases([record.saga_id])
        return driver_of(record, leases.get(record.saga_id))

    async def detail(
        self,
        request: Request,
        record: SagaRecord,
        flashes: Iterable[Flash] = (),
        status_code: int = 200,
    ) -> Response:
        history = await self.store.history(record.saga_id)
        children = await admin.children_of(self.store, record)
        shown = admin.SagaDetail(record, history, children)
        driver = await self.driver(record)
        return self._detail(request, shown, driver, flashes, status_code)

    def _detail(
        self,
        request: Request,
        shown: admin.SagaDetail,
        driver: Driver,
        flashes: Iterable[Flash] = (),
        status_code: int = 200,
    ) -> Response:
        record, history = shown.record, shown.history
        now = self.clock.now()
        definition = charts.definition_of(self.ops.sagas, record)
        order = () if definition is None else definition.graph.order

        def child_url(child_id: str) -> str:
            return saga_url(request, child_id)

        return self.pages.render(
            request,
            "detail.html",
            {
                "record": record,
                "facts": views.header(record, now=now),
                "driver": driver,
                "worker_hint": self.worker_hint or "MODULE",
                "gantt": charts.gantt(record, history, now, order),
                "graph": (
                    None
                    if definition is None
                    else charts.step_graph(definition, record, child_url)
                ),
                "summary": views.summary(record, history, now),
                "steps": views.steps(record),
                "timeline": views.timeline(record, history),
                "context_json": views.pretty_json(record.context),
                "state": record.state,
                "action": views.ACTION_FOR_STATUS.get(record.status),
                "actions": views.actions_for(record),
                "definition_loaded": self.ops.knows(record.saga_name),
                "saga_url": saga_url(request, record.saga_id),
                "parent": views.parent_of(record),
                "children": views.children(shown.children),
            },
            status_code=status_code,
            flashes=flashes,
        )

    async def show(self, request: Request, saga_id: str) -> Response:
        """``sagakit show``: by id, or by a unique prefix (redirected)."""
        try:
            shown = await admin.show(self.store, saga_id)
        except SagaNotFound as exc:
            if saga_id.rpartition("/")[2] in ACTIONS:  # an action's URL
                refused = self.pages.error(request, 405, "actions are POST only")
                refused.headers["Allow"] = "POST"
                return refused
            if await self.events.conversation(saga_id) is not None:
                return RedirectResponse(choreography_url(request, saga_id), 307)
            return self.pages.error(request, 404, str(exc))
        record = shown.record
        if record.saga_id != saga_id:
            return RedirectResponse(saga_url(request, record.saga_id), 307)
        driver = await self.driver(record)
        flashes = []
        done = request.query_params.get("flash")
        if done in DONE:
            status = record.status.value
            flashes.append(Flash("ok", f"{DONE[done]}: the saga is now {status}."))
            if driver.idle:
                flashes.append(Flash("warn", self.nobody_drives(driver)))
        return self._detail(request, shown, driver, flashes)

    @staticmethod
    def nobody_drives(driver: Driver) -> str:
        """What an action did not do when no process drives the saga."""
        return (
            f"Nobody drives this saga now ({driver.text}): the request waits "
            "for a worker to take it. See below how to start one."
        )

    async def api_show(self, saga_id: str) -> JSONResponse:
        try:
            shown = await admin.show(self.store, saga_id)
        except SagaNotFound as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        record, history = shown.record, shown.history
        driver = await self.driver(record)
        return JSONResponse(
            views.record_json(record)
            | {
                "driver": driver.as_json(),
                "context": record.context,
                "steps": views.steps_json(record),
                "history": [views.history_json(h) for h in history],
                "children": [
                    {"step": c.step, "saga_id": c.saga_id, "status": c.status}
                    for c in views.children(shown.children)
                ],
            }
        )


async def security_headers(
    request: Request, call_next: RequestResponseEndpoint
) -> Response:
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    if not request.url.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def create_app(
    store: SagaStore,
    sagas: Iterable[Saga[Any]] = (),
    *,
    token: str | None = None,
    clock: Clock | None = None,
    workflows: WorkflowStore | None = None,
    worker_hint: str | None = None,
) -> FastAPI:
    """The dashboard over ``store``.

    ``sagas`` are the definitions actions may apply to (an action on another
    saga is refused with 409) and whose graphs the saga pages draw. Without
    ``token`` the dashboard is read-only: every action answers 403.
    ``/workflows`` shows the instances in ``workflows``, by default the
    workflow tables of ``store`` (SQLite or PostgreSQL, on its connection);
    ``/choreographies/ID`` the events of a correlation id in its
    choreography tables. ``worker_hint`` is the module ``sagakit worker``
    would run these sagas from (pages say how to start one). The caller owns
    both stores and closes them.
    """
    clock = clock or SystemClock()
    guard = TokenGuard(token)
    ops = Operator(store, sagas, clock)
    pages = Pages(guard, actions_enabled=not guard.read_only and bool(ops.saga_names))
    events = EventSource(store)
    read = Views(store, ops, pages, clock, events, worker_hint)
    listed = ListViews(store, ops, pages, clock, events)
    write = ActionRoutes(store, ops, guard, pages, read.detail)
    flows = WorkflowViews(WorkflowSource(store, workflows), pages, clock)
    talks = ChoreographyViews(events, pages)

    app = FastAPI(
        title="sagakit dashboard",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.middleware("http")(security_headers)
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    app.get("/", response_class=HTMLResponse)(listed.index)
    # a sub-saga's id holds "/": the id is the rest of the path
    app.get("/sagas/{saga_id:path}", response_class=HTMLResponse)(read.show)
    app.get("/api/counts")(listed.counts)
    app.get("/api/sagas")(listed.api_list)
    app.get("/api/search")(listed.api_search)
    app.get("/api/sagas/{saga_id:path}")(read.api_show)
    app.get("/choreographies/{correlation_id:path}", response_class=HTMLResponse)(
        talks.show
    )
    app.get("/api/choreographies/{correlation_id:path}")(talks.api_show)
    app.get("/workflows", response_class=HTMLResponse)(flows.index)
    app.get("/workflows/{app}/{instance_id:path}", response_class=HTMLResponse)(
        flows.show
    )
    app.get("/api/workflow-counts")(flows.counts)
    app.get("/api/workflows")(flows.api_list)
    app.get("/api/workflows/{app}/{instance_id:path}")(flows.api_show)
    app.post("/sagas/{saga_id:path}/{action}")(write.act)
    app.post("/logout")(write.logout)
    return app
