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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.base import RequestResponseEndpoint

from sagakit import __version__, admin
from sagakit.admin import Driver
from sagakit.dashboard import charts, operate, views
from sagakit.dashboard.actions import DONE, FORK, ActionRoutes, Operator
from sagakit.dashboard.auth import SESSION_TTL, TokenGuard
from sagakit.dashboard.choreographies import (
    ChoreographyViews,
    EventSource,
    choreography_url,
)
from sagakit.dashboard.listing import ListViews, status_counts
from sagakit.dashboard.locks import LockViews
from sagakit.dashboard.login import LoginRoutes
from sagakit.dashboard.middleware import MAX_BODY, Gate, error_handlers
from sagakit.dashboard.page import Flash, Pages, saga_url
from sagakit.dashboard.workflows import WorkflowSource, WorkflowViews
from sagakit.definition.saga import Saga
from sagakit.errors import SagaError, SagaNotFound
from sagakit.ports.clock import Clock, SystemClock
from sagakit.ports.store import SagaRecord, SagaStore
from sagakit.ports.workflow_store import WorkflowStore
from sagakit.runtime.operator import ACTIONS
from sagakit.views.audit import audit_lines

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
    locked: LockViews

    async def driver(self, record: SagaRecord) -> Driver:
        return (await admin.drivers(self.store, [record]))[record.saga_id]

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
        driver, held = await self.driver(record), await self.held(record)
        return self._detail(
            request, shown, driver, held, flashes=flashes, status_code=status_code
        )

    async def held(self, record: SagaRecord) -> dict[str, Any]:
        """The keys the saga holds and the queues it waits in."""
        return await self.locked.of_saga(record.saga_id)

    def _detail(
        self,
        request: Request,
        shown: admin.SagaDetail,
        driver: Driver,
        held: dict[str, Any],
        *,
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
                "held": held,
                "worker_hint": self.ops.worker_hint,
                "then": self.ops.then(record, driver),
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
                "repairs": operate.repairs(record),
                "fork_steps": operate.fork_steps(record, history),
                "audit": audit_lines(history),
            },
            status_code=status_code,
            flashes=flashes,
        )

    async def show(self, request: Request, saga_id: str) -> Response:
        """``sagakit show``: by id, or by a unique prefix (redirected)."""
        try:
            shown = await admin.show(self.store, saga_id)
        except SagaNotFound as exc:
            if saga_id.rpartition("/")[2] in (*ACTIONS, FORK):  # an action's URL
                refused = self.pages.error(request, 405, "actions are POST only")
                refused.headers["Allow"] = "POST"
                return refused
            if await self.events.conversation(saga_id) is not None:
                return RedirectResponse(choreography_url(request, saga_id), 307)
            return self.pages.error(request, 404, str(exc))
        record = shown.record
        if record.saga_id != saga_id:
            return RedirectResponse(saga_url(request, record.saga_id), 307)
        driver, held = await self.driver(record), await self.held(record)
        flashes = []
        done = request.query_params.get("flash")
        if done in DONE:
            status = record.status.value
            then = self.ops.then(record, driver)
            flashes.append(
                Flash("ok", f"{DONE[done]}: the saga is now {status}; {then}.")
            )
        return self._detail(request, shown, driver, held, flashes=flashes)

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
    token: str | Mapping[str, str] | None = None,
    clock: Clock | None = None,
    workflows: WorkflowStore | None = None,
    hosts: Iterable[str] | None = None,
    login_required: bool = False,
    session_ttl: float = SESSION_TTL,
    max_body: int = MAX_BODY,
    worker_hint: str | None = None,
) -> FastAPI:
    """The dashboard over ``store``.

    ``sagas`` are the definitions actions may apply to (an action on another
    saga is refused with 409) and whose graphs the saga pages draw. Without
    ``token`` the dashboard is read-only: every action answers 403.
    ``token`` is one operator's token, or
    ``{name: token}`` for several (each at least 16 characters; the name a
    request signed in as is ``request.state.operator``). ``/workflows``
    shows the instances in ``workflows``, by default the workflow tables of
    ``store`` (SQLite or PostgreSQL, on its connection);
    ``/choreographies/ID`` the events of a correlation id in its
    choreography tables. ``worker_hint`` is the module ``sagakit worker``
    would run these sagas from (pages say how to start one). The caller owns
    both stores and closes them.

    ``hosts``: the host names clients may use (the ``Host`` header; others
    are refused, against DNS rebinding); None accepts any. With
    ``login_required`` every page needs a signed-in operator (``/login``, or
    a Bearer token), not only the actions. Sessions last ``session_ttl``
    seconds; request bodies over ``max_body`` bytes are refused while read.
    See :mod:`sagakit.dashboard.middleware`.
    """
    clock = clock or SystemClock()
    guard = TokenGuard(token, clock=clock, session_ttl=session_ttl)
    if login_required and guard.read_only:
        raise SagaError("login_required needs a token to sign in with")
    ops = Operator(store, sagas, clock, worker_hint)
    pages = Pages(guard, actions_enabled=not guard.read_only and bool(ops.saga_names))
    events = EventSource(store)
    locked = LockViews(store, pages, clock)
    read = Views(store, ops, pages, clock, events, locked)
    listed = ListViews(store, ops, pages, clock, events)
    write = ActionRoutes(store, ops, guard, pages, read.detail)
    locked.actions = write
    flows = WorkflowViews(WorkflowSource(store, workflows), pages, clock)
    signing = LoginRoutes(guard, pages)
    talks = ChoreographyViews(events, pages)

    app = FastAPI(
        title="sagakit dashboard",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(
        Gate,
        guard=guard,
        html=pages.error,
        hosts=None if hosts is None else frozenset(h.lower() for h in hosts),
        max_body=max_body,
        login_required=login_required,
    )
    app.middleware("http")(security_headers)  # outside the gate: on its answers too
    http_error, server_error = error_handlers(pages.error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, server_error)
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    app.get("/", response_class=HTMLResponse)(listed.index)
    # a sub-saga's id holds "/": the id is the rest of the path
    app.get("/sagas/{saga_id:path}", response_class=HTMLResponse)(read.show)
    app.get("/api/counts")(listed.counts)
    app.get("/api/sagas")(listed.api_list)
    app.get("/api/search")(listed.api_search)
    app.get("/locks", response_class=HTMLResponse)(locked.page)
    app.get("/api/locks")(locked.api)
    app.post("/locks/release")(locked.release)
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
    app.get("/login", response_class=HTMLResponse)(signing.form)
    app.post("/login")(signing.sign_in)
    app.post("/logout")(signing.logout)
    return app
