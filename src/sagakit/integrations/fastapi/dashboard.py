"""The dashboard as a sub-application of the app, behind the app's own auth.

::

    async def admins_only(request: Request) -> None:
        user = await current_user(request)          # the app's own check
        if not user.is_admin:
            raise HTTPException(403, "admins only")

    mount_dashboard(app, lifespan, path="/sagakit", authorize=admins_only)

Every request under ``path`` first goes to ``authorize(request)`` (sync or
async): an ``HTTPException`` it raises is the answer (its status, detail and
headers: a 401 with ``WWW-Authenticate``, a redirect to the app's sign-in),
``False`` is a 403, anything else lets the request through to the dashboard,
built on the store the lifespan opened (at the first request after startup).

The app decides who may see the dashboard at all; the dashboard's own
``token`` (see :func:`sagakit.dashboard.create_app`) still decides who may
retry, resume or cancel, and names them in the saga's history. Without a
token the mounted dashboard is read-only.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from sagakit.dashboard import create_app
from sagakit.dashboard.auth import operator_tokens
from sagakit.errors import SagaError
from sagakit.integrations.fastapi.lifespan import SagakitLifespan
from sagakit.integrations.fastapi.sagas import Sagas

Authorize = Callable[[Request], Awaitable[object] | object]
"""The app's decision on a dashboard request: raise to refuse."""


class GuardedDashboard:
    """The ASGI app mounted at the path: ``authorize``, then the dashboard."""

    def __init__(
        self,
        lifespan: SagakitLifespan,
        authorize: Authorize | None,
        options: Mapping[str, Any],
    ) -> None:
        self.lifespan = lifespan
        self.authorize = authorize
        self.options = dict(options)
        self._built: tuple[Sagas, FastAPI] | None = None

    def dashboard(self) -> FastAPI:
        """The dashboard over the running lifespan's store (built once per run)."""
        sagas = self.lifespan.sagas
        if self._built is None or self._built[0] is not sagas:
            app = create_app(sagas.store, sagas.sagas.values(), **self.options)
            self._built = (sagas, app)
        return self._built[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return  # lifespan messages belong to the app, not to a mount
        refused = await self._refused(Request(scope))
        if refused is not None:
            await refused(scope, receive, send)
            return
        try:
            dashboard = self.dashboard()
        except SagaError as exc:
            await JSONResponse({"detail": str(exc)}, status_code=503)(
                scope, receive, send
            )
            return
        await dashboard(scope, receive, send)

    async def _refused(self, request: Request) -> JSONResponse | None:
        if self.authorize is None:
            return None
        try:
            verdict = self.authorize(request)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except HTTPException as exc:
            return JSONResponse(
                {"detail": exc.detail},
                status_code=exc.status_code,
                headers=dict(exc.headers or {}),
            )
        if verdict is False:
            return JSONResponse({"detail": "not allowed"}, status_code=403)
        return None


def mount_dashboard(
    app: FastAPI,
    lifespan: SagakitLifespan,
    *,
    authorize: Authorize | None,
    path: str = "/sagakit",
    **options: Any,
) -> GuardedDashboard:
    """Mount the dashboard at ``path`` of ``app``, over ``lifespan``'s store
    and sagas, behind ``authorize`` (see the module; ``None`` says on purpose
    that the app adds no check of its own). ``options`` go to
    :func:`sagakit.dashboard.create_app` (``token``, ``login_required``,
    ``hosts``, ...) and are checked now."""
    if not isinstance(lifespan, SagakitLifespan):
        raise SagaError(
            f"mount_dashboard: lifespan must be what sagakit_lifespan() "
            f"returned, got {lifespan!r}"
        )
    if authorize is not None and not callable(authorize):
        raise SagaError(
            f"mount_dashboard: authorize must be a function of the request "
            f"(or None), got {authorize!r}"
        )
    if not path.startswith("/") or path == "/" or path.endswith("/"):
        raise SagaError(
            f"mount_dashboard: path must look like '/sagakit' (a leading '/', "
            f"no trailing one), got {path!r}"
        )
    known = set(inspect.signature(create_app).parameters) - {"store", "sagas"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise SagaError(
            f"mount_dashboard: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    tokens = operator_tokens(options.get("token"))  # a bad token fails now
    if options.get("login_required") and not tokens:
        raise SagaError("mount_dashboard: login_required needs a token to sign in with")
    guarded = GuardedDashboard(lifespan, authorize, options)
    app.mount(path, guarded)
    return guarded
