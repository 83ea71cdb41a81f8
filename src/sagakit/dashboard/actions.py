"""Operator actions from the dashboard: the same library calls as the CLI.

Retry, resume, cancel, pause, unpause, retry-compensation, mark-compensated,
skip-compensation and fork call the :mod:`sagakit.admin` function of that
name, as the ``sagakit`` commands do: the request is committed and the
instance handed over (``operator.request(..., hand_over=True)``). The
dashboard never runs steps itself; a worker (``sagakit worker`` or
``recover``) drives it, and the answer says whether one does.

``POST /sagas/{id}/{action}`` answers API clients (``Authorization: Bearer``)
with JSON, and HTML forms with a redirect back to the saga (a fork: to the
new one) and a flash message. Every action records who (the name signed in,
or the API call's ``operator``) and why (``reason``, needed); the actions on
one compensation and ``fork`` name a ``step``, and ``fork`` may carry an
edited ``context`` (a JSON object) and a new ``saga_id``. A missing token is
401, a wrong one 403, a missing name, reason or step 400, an action that
does not fit the saga 409; none of them changes anything.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from sagakit import admin
from sagakit.admin import Driver
from sagakit.dashboard.auth import SESSION_COOKIE, Credentials, TokenGuard, Verdict
from sagakit.dashboard.forms import Denied, body_fields
from sagakit.dashboard.login import TOO_MANY, remember
from sagakit.dashboard.page import Flash, Pages, client_of, saga_url
from sagakit.definition.saga import Saga
from sagakit.errors import ConcurrencyError, SagaError, SagaNotFound, StateError
from sagakit.ports.clock import Clock
from sagakit.ports.store import SagaRecord, SagaStore
from sagakit.runtime.fork import Forked
from sagakit.runtime.operator import ACTIONS, STEP_ACTIONS, Action
from sagakit.views.audit import next_step

logger = logging.getLogger(__name__)

FORK = "fork"
MAX_REASON = 500
HTTP_UNAUTHORIZED = 401
OPERATOR_HEADER = "X-Sagakit-Operator"
DONE = {
    "retry": "Retry requested",
    "resume": "Resume requested",
    "cancel": "Cancel requested",
    "pause": "Pause requested",
    "unpause": "Unpause requested",
    "retry_compensation": "Compensation retry requested",
    "mark_compensated": "Step marked compensated",
    "skip_compensation": "Compensation skipped",
    FORK: "Forked into this new saga",
}
_BY_NAME: dict[str, Action] = {a: a for a in ACTIONS}
_CALLS = {
    "retry": admin.retry,
    "resume": admin.resume,
    "cancel": admin.cancel,
    "pause": admin.pause,
    "unpause": admin.unpause,
}
_STEP_CALLS = {
    "retry_compensation": admin.retry_compensation,
    "mark_compensated": admin.mark_compensated,
    "skip_compensation": admin.skip_compensation,
}

DetailPage = Callable[[Request, SagaRecord, Iterable[Flash], int], Awaitable[Response]]


class Operator:
    """Applies actions to the instances of the loaded saga definitions."""

    def __init__(
        self,
        store: SagaStore,
        sagas: Iterable[Saga[Any]],
        clock: Clock | None,
        worker_hint: str | None = None,
    ) -> None:
        self.store = store
        self.worker_hint = worker_hint or "MODULE"
        """What ``sagakit worker`` takes to run these sagas (the ``--sagas``
        module), for the pages to say how to start one."""
        self.sagas = list(sagas)
        self.saga_names = frozenset(  # with the sub-sagas they run
            one.name for s in self.sagas for one in (s, *s.family)
        )
        self.clock = clock

    def knows(self, saga_name: str) -> bool:
        return saga_name in self.saga_names

    def _known(self, saga_id: str, saga_name: str) -> None:
        if not self.knows(saga_name):
            raise StateError(
                f"saga {saga_id}: the dashboard has no definition of saga "
                f"{saga_name!r}; start it with --sagas MODULE to act on it"
            )

    async def apply(
        self,
        saga_id: str,
        saga_name: str,
        action: Action,
        *,
        reason: str,
        by: str,
        step: str | None = None,
    ) -> SagaRecord:
        """Commit ``action`` (on ``step``'s compensation, for those that name
        one) and hand the instance over to a worker; returns the record as
        committed.

        ``StateError`` when it does not fit (the saga's status, its pivot, a
        concurrent save, or a saga the dashboard has no definition of);
        ``SagaNotFound`` for an unknown id."""
        self._known(saga_id, saga_name)
        said: dict[str, Any] = {"by": by, "reason": reason, "clock": self.clock}
        if action in STEP_ACTIONS:
            assert step is not None  # noqa: S101 - the route checked it
            on_step = _STEP_CALLS[action]
            return await on_step(self.store, self.sagas, saga_id, step, **said)
        return await _CALLS[action](self.store, self.sagas, saga_id, **said)

    async def fork(self, found: SagaRecord, wish: Wish) -> Forked:
        """Fork the saga into a new instance that re-runs it from the
        step ``wish`` names (its context: ``found``'s, with ``wish``'s
        changes)."""
        self._known(found.saga_id, found.saga_name)
        assert wish.step is not None  # noqa: S101 - the route checked it
        context = None if wish.context is None else found.context | wish.context
        said: dict[str, Any] = {
            "by": wish.by,
            "reason": wish.reason,
            "clock": self.clock,
        }
        return await admin.fork(
            self.store,
            self.sagas,
            found.saga_id,
            wish.step,
            context=context,
            new_id=wish.new_id,
            **said,
        )

    async def next_step(self, record: SagaRecord) -> str:
        """Who runs what an action on ``record`` started."""
        owner = await admin.driver_of(self.store, record.saga_id)
        return next_step(record.status.terminal, owner, self.worker_hint)

    def then(self, record: SagaRecord, driver: Driver) -> str:
        """:meth:`next_step` for a saga whose driver is known."""
        return next_step(record.status.terminal, driver.live_owner, self.worker_hint)


@dataclass(frozen=True, slots=True)
class Wish:
    """What one action request asks for, checked: who, why, and for the
    actions that need them the step, a fork's context changes and id."""

    by: str
    reason: str
    step: str | None = None
    context: dict[str, Any] | None = None
    new_id: str | None = None


def _wish(by: str | None, action: str, fields: Mapping[str, str]) -> Wish:
    """The request's :class:`Wish`; ``Denied`` (400) for what is missing."""
    if by is None:
        raise Denied(
            400,
            "say who you are: sign in with your name, or send an 'operator' "
            f"field or an {OPERATOR_HEADER} header (it is kept in the saga's "
            "history)",
        )
    reason = (fields.get("reason") or "").strip()[:MAX_REASON]
    if not reason:
        raise Denied(
            400, "say why: a reason is needed (it is kept in the saga's history)"
        )
    step = (fields.get("step") or "").strip() or None
    if step is None and (action in STEP_ACTIONS or action == FORK):
        raise Denied(400, f"{action} needs a step: a 'step' field")
    context = None
    text = (fields.get("context") or "").strip()
    if action == FORK and text:
        try:
            context = json.loads(text)
        except ValueError:
            raise Denied(400, "the context is not JSON") from None
        if not isinstance(context, dict):
            raise Denied(400, "the context must be a JSON object")
    new_id = (fields.get("saga_id") or "").strip() or None
    return Wish(by, reason, step, context, new_id if action == FORK else None)


@dataclass(eq=False)
class ActionRoutes:
    """The handlers behind ``POST /sagas/{id}/{action}``."""

    store: SagaStore
    ops: Operator
    guard: TokenGuard
    pages: Pages
    detail: DetailPage

    def authorize(self, request: Request, fields: Mapping[str, str]) -> Credentials:
        """The request's credentials once they are allowed (the operator
        they name is ``request.state.operator``); else :class:`Denied`."""
        creds = Credentials(
            authorization=request.headers.get("authorization"),
            form_token=fields.get("token") or None,
            session=request.cookies.get(SESSION_COOKIE),
            csrf=fields.get("csrf"),
            client=client_of(request),
            operator=fields.get("operator") or request.headers.get(OPERATOR_HEADER),
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

    def denied(self, request: Request, api: bool, exc: Denied, back: str) -> Response:
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

    def remember(self, request: Request, response: Response, by: str) -> None:
        """Open a session for ``by`` after a form sent the right token."""
        remember(self.guard, request, response, by)

    async def act(self, request: Request, saga_id: str, action: str) -> Response:
        api = "authorization" in request.headers
        back = saga_url(request, saga_id)
        if action not in _BY_NAME and action != FORK:
            return self.denied(request, api, Denied(404, f"no action {action!r}"), back)
        try:
            fields = await body_fields(request)
            creds = self.authorize(request, fields)
            wish = _wish(request.state.operator, action, fields)
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
            return self.denied(request, api, exc, back)
        try:
            found = await admin.find(self.store, saga_id)
            record = await self._apply(found, action, wish)
        except SagaNotFound as exc:
            return self.denied(request, api, Denied(404, str(exc)), back)
        except (StateError, ConcurrencyError) as exc:
            return await self._refused(
                request, api, creds, saga_id, f"{action}: {exc}", by=wish.by
            )
        if api:
            return JSONResponse(
                {
                    "saga_id": record.saga_id,
                    "action": action,
                    "status": record.status.value,
                    "message": DONE[action],
                    "by": wish.by,
                    "next": await self.ops.next_step(record),
                }
                | ({"forked_from": found.saga_id} if action == FORK else {})
            )
        where = saga_url(request, record.saga_id)
        response = RedirectResponse(f"{where}?flash={action}", status_code=303)
        if creds.form_token:
            self.remember(request, response, wish.by)
        return response

    async def _apply(self, found: SagaRecord, action: str, wish: Wish) -> SagaRecord:
        if action != FORK:
            return await self.ops.apply(
                found.saga_id,
                found.saga_name,
                _BY_NAME[action],
                reason=wish.reason,
                by=wish.by,
                step=wish.step,
            )
        try:
            forked = await self.ops.fork(found, wish)
        except SagaError as exc:
            if isinstance(exc, StateError | SagaNotFound):
                raise
            raise StateError(str(exc)) from exc
        return await self.store.get(forked.saga_id)

    async def _refused(
        self,
        request: Request,
        api: bool,
        creds: Credentials,
        saga_id: str,
        why: str,
        *,
        by: str,
    ) -> Response:
        message = f"Refused {why}"
        if api:
            return JSONResponse({"detail": message}, status_code=409)
        current = await admin.find(self.store, saga_id)
        response = await self.detail(request, current, [Flash("error", message)], 409)
        if creds.form_token:
            self.remember(request, response, by)
        return response


__all__ = ["ACTIONS", "FORK", "ActionRoutes", "Denied", "Operator"]
