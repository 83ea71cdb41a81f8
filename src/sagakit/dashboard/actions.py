"""Operator actions from the dashboard: the same library calls as the CLI.

Retry, resume, cancel, pause and unpause call :func:`sagakit.admin.retry`,
:func:`~sagakit.admin.resume`, :func:`~sagakit.admin.cancel`,
:func:`~sagakit.admin.pause` and :func:`~sagakit.admin.unpause`, as
``sagakit retry|resume|cancel|pause|unpause`` do: the request is committed
and the instance handed over (``operator.request(..., hand_over=True)``). The
dashboard never runs steps itself; a worker (``sagakit worker`` or
``recover``) drives it.

``POST /sagas/{id}/{action}`` answers API clients (``Authorization: Bearer``)
with JSON, and HTML forms with a redirect back to the saga and a flash
message. A missing token is 401, a wrong one 403, an action that does not fit
the saga's status 409; none of them changes anything.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from sagakit import admin
from sagakit.dashboard.auth import SESSION_COOKIE, Credentials, TokenGuard, Verdict
from sagakit.dashboard.forms import Denied, body_fields
from sagakit.dashboard.login import TOO_MANY, remember
from sagakit.dashboard.page import Flash, Pages, client_of, saga_url
from sagakit.definition.saga import Saga
from sagakit.errors import ConcurrencyError, SagaNotFound, StateError
from sagakit.ports.clock import Clock
from sagakit.ports.store import SagaRecord, SagaStore
from sagakit.runtime.operator import ACTIONS, Action

logger = logging.getLogger(__name__)

BY = "dashboard"
MAX_REASON = 500
HTTP_UNAUTHORIZED = 401
DONE = {
    "retry": "Retry requested",
    "resume": "Resume requested",
    "cancel": "Cancel requested",
    "pause": "Pause requested",
    "unpause": "Unpause requested",
}
_BY_NAME: dict[str, Action] = {a: a for a in ACTIONS}
_CALLS = {
    "retry": admin.retry,
    "resume": admin.resume,
    "cancel": admin.cancel,
    "pause": admin.pause,
    "unpause": admin.unpause,
}

DetailPage = Callable[[Request, SagaRecord, Iterable[Flash], int], Awaitable[Response]]


class Operator:
    """Applies actions to the instances of the loaded saga definitions."""

    def __init__(
        self, store: SagaStore, sagas: Iterable[Saga[Any]], clock: Clock | None
    ) -> None:
        self.store = store
        self.sagas = list(sagas)
        self.saga_names = frozenset(  # with the sub-sagas they run
            one.name for s in self.sagas for one in (s, *s.family)
        )
        self.clock = clock

    def knows(self, saga_name: str) -> bool:
        return saga_name in self.saga_names

    async def apply(
        self,
        saga_id: str,
        saga_name: str,
        action: Action,
        *,
        reason: str | None = None,
        by: str = BY,
    ) -> SagaRecord:
        """Commit ``action`` and hand the instance over to a worker; returns the
        record as committed.

        ``StateError`` when it does not fit (the saga's status, its pivot, a
        concurrent save, or a saga the dashboard has no definition of);
        ``SagaNotFound`` for an unknown id."""
        if not self.knows(saga_name):
            raise StateError(
                f"saga {saga_id}: the dashboard has no definition of saga "
                f"{saga_name!r}; start it with --sagas MODULE to act on it"
            )
        call = _CALLS[action]
        return await call(
            self.store, self.sagas, saga_id, by=by, reason=reason, clock=self.clock
        )


@dataclass(eq=False)
class ActionRoutes:
    """The handlers behind ``POST /sagas/{id}/{action}``."""

    store: SagaStore
    ops: Operator
    guard: TokenGuard
    pages: Pages
    detail: DetailPage

    def _authorize(self, request: Request, fields: Mapping[str, str]) -> Credentials:
        """The request's credentials once they are allowed (the operator
        they name is ``request.state.operator``); else :class:`Denied`."""
        creds = Credentials(
            authorization=request.headers.get("authorization"),
            form_token=fields.get("token") or None,
            session=request.cookies.get(SESSION_COOKIE),
            csrf=fields.get("csrf"),
            client=client_of(request),
        )
        checked = self.guard.check(creds)
        verdict = checked.verdict
        request.state.operator = checked.operator
        if verdict is Verdict.THROTTLED:
            wait = str(math.ceil(checked.retry_after))
            raise Denied(429, TOO_MANY, {"Retry-After": wait})
        if verdict is Verdict.READ_ONLY:
            raise Denied(
                403,
                "the dashboard is read-only: it was started without a token, "
                "so actions are disabled",
            )
        if verdict is Verdict.MISSING:
            raise Denied(
                HTTP_UNAUTHORIZED, "an operator token is needed for this action"
            )
        if verdict is Verdict.WRONG:
            raise Denied(403, "the operator token is wrong")
        return creds

    def _denied(self, request: Request, api: bool, exc: Denied, back: str) -> Response:
        response: Response
        if api:
            response = JSONResponse(
                {"detail": exc.message}, status_code=exc.status_code
            )
        else:
            response = self.pages.error(request, exc.status_code, exc.message, back)
        response.headers.update(exc.headers)
        if exc.status_code == HTTP_UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Bearer realm="sagakit"'
        return response

    def _remember(self, request: Request, response: Response) -> None:
        """Open a session after a form sent the right token."""
        operator = getattr(request.state, "operator", None)
        if operator is not None:
            remember(self.guard, request, response, operator)

    async def act(self, request: Request, saga_id: str, action: str) -> Response:
        api = "authorization" in request.headers
        back = saga_url(request, saga_id)
        chosen = _BY_NAME.get(action)
        if chosen is None:
            return self._denied(
                request, api, Denied(404, f"no action {action!r}"), back
            )
        try:
            fields = await body_fields(request)
            creds = self._authorize(request, fields)
        except Denied as exc:
            logger.warning(
                "dashboard action denied",
                extra={
                    "action": "dashboard_action_denied",
                    "requested": action,
                    "saga_id": saga_id,
                    "http_status": exc.status_code,
                },
            )
            return self._denied(request, api, exc, back)
        reason = (fields.get("reason") or "").strip()[:MAX_REASON] or None
        try:
            found = await admin.find(self.store, saga_id)
            record = await self.ops.apply(
                found.saga_id, found.saga_name, chosen, reason=reason
            )
        except SagaNotFound as exc:
            return self._denied(request, api, Denied(404, str(exc)), back)
        except (StateError, ConcurrencyError) as exc:
            return await self._refused(request, api, creds, saga_id, f"{action}: {exc}")
        if api:
            return JSONResponse(
                {
                    "saga_id": record.saga_id,
                    "action": action,
                    "status": record.status.value,
                    "message": DONE[action],
                }
            )
        where = saga_url(request, record.saga_id)
        response = RedirectResponse(f"{where}?flash={action}", status_code=303)
        if creds.form_token:
            self._remember(request, response)
        return response

    async def _refused(
        self, request: Request, api: bool, creds: Credentials, saga_id: str, why: str
    ) -> Response:
        message = f"Refused {why}"
        if api:
            return JSONResponse({"detail": message}, status_code=409)
        current = await admin.find(self.store, saga_id)
        response = await self.detail(request, current, [Flash("error", message)], 409)
        if creds.form_token:
            self._remember(request, response)
        return response


__all__ = ["ACTIONS", "BY", "ActionRoutes", "Denied", "Operator"]
