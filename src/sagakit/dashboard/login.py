"""Signing in and out of the dashboard: ``GET``/``POST /login`` and
``POST /logout``, and the session cookie they (and an action's form that
carried the token) set or clear.

The cookie holds a server-side session's random id (see
:mod:`~sagakit.dashboard.auth`), never the token; logging out ends the
session on the server, so a copy of the cookie stops working too.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from sagakit.dashboard.auth import SESSION_COOKIE, Credentials, TokenGuard, Verdict
from sagakit.dashboard.forms import Denied, body_fields
from sagakit.dashboard.page import Flash, Pages, client_of, root_of

logger = logging.getLogger(__name__)

TOO_MANY = "too many wrong tokens from this address: try again later"


def remember(
    guard: TokenGuard, request: Request, response: Response, operator: str
) -> None:
    """Open a session for ``operator`` and set its cookie on ``response``."""
    session = guard.sessions.open(operator)
    request.state.operator = operator
    response.set_cookie(
        SESSION_COOKIE,
        session.session_id,
        max_age=math.ceil(guard.sessions.ttl),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=root_of(request) or "/",
    )
    logger.info(
        "dashboard sign-in",
        extra={"action": "dashboard_sign_in", "operator": operator},
    )


def safe_next(request: Request, target: str | None) -> str:
    """Where to go after signing in: a path of this dashboard, else its
    root (never another site: ``//evil`` and ``https://`` are refused)."""
    root = root_of(request)
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return f"{root}{target}"
    return f"{root}/"


@dataclass(eq=False)
class LoginRoutes:
    """The handlers behind ``/login`` and ``/logout``."""

    guard: TokenGuard
    pages: Pages

    async def form(self, request: Request) -> Response:
        if self.guard.read_only:
            return self.pages.error(
                request, 404, "the dashboard is read-only: there is no sign-in"
            )
        return self._page(request, request.query_params.get("next"))

    def _page(
        self,
        request: Request,
        target: str | None,
        flashes: list[Flash] | None = None,
        status_code: int = 200,
    ) -> Response:
        return self.pages.render(
            request,
            "login.html",
            {"next": target or "/"},
            status_code=status_code,
            flashes=flashes or [],
        )

    async def sign_in(self, request: Request) -> Response:
        if self.guard.read_only:
            return self.pages.error(
                request, 404, "the dashboard is read-only: there is no sign-in"
            )
        try:
            fields = await body_fields(request)
        except Denied as exc:
            return self.pages.error(request, exc.status_code, exc.message)
        target = fields.get("next")
        checked = self.guard.check(
            Credentials(
                form_token=fields.get("token") or None,
                client=client_of(request),
                operator=fields.get("operator"),
            )
        )
        if checked.verdict is Verdict.THROTTLED:
            response = self._page(request, target, [Flash("error", TOO_MANY)], 429)
            response.headers["Retry-After"] = str(math.ceil(checked.retry_after))
            return response
        if checked.verdict is Verdict.ALLOWED and checked.operator is None:
            nameless = Flash("error", "say who you are: your name is needed")
            return self._page(request, target, [nameless], 400)
        if checked.verdict is not Verdict.ALLOWED or checked.operator is None:
            logger.warning(
                "dashboard sign-in refused",
                extra={"action": "dashboard_sign_in_refused"},
            )
            wrong = Flash("error", "the operator token is wrong")
            return self._page(request, target, [wrong], 403)
        response = RedirectResponse(safe_next(request, target), status_code=303)
        remember(self.guard, request, response, checked.operator)
        return response

    async def logout(self, request: Request) -> Response:
        """End the session on the server and clear its cookie."""
        self.guard.sessions.close(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(f"{root_of(request)}/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=root_of(request) or "/")
        return response
