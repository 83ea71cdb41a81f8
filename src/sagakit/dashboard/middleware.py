"""What every request to the dashboard passes before a page or an action
sees it (:class:`Gate`, plain ASGI), and how errors are answered.

- **Host header**: with ``hosts``, a request naming another host is refused
  (400). A page on ``127.0.0.1`` cannot then be read by a site whose DNS
  name an attacker points at ``127.0.0.1`` (DNS rebinding).
- **Body size**: a body over ``max_body`` bytes is refused (413) while it is
  read: at once when ``Content-Length`` says so, else as soon as the bytes
  read go past the limit. Nothing larger is ever buffered.
- **Who**: the operator signed in (a session cookie, or a Bearer token) is
  ``request.state.operator`` (None if nobody), for the pages and actions.
  With ``login_required`` every page but ``/login`` and ``/static`` needs
  one: a browser is sent to ``/login``, an API client gets a 401.

Errors answer in the client's language
(:func:`~sagakit.dashboard.page.wants_json`): JSON ``{"detail": ...}`` for
API clients, an HTML page for browsers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sagakit.dashboard.auth import SESSION_COOKIE, TokenGuard, bearer_token
from sagakit.dashboard.page import client_of, root_of, wants_json

logger = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
"""Largest request body read (a form or a JSON action is far smaller)."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

ErrorPage = Callable[[Request, int, str], Response]
"""Renders an error: ``Pages.error``."""


def error_response(
    request: Request,
    status_code: int,
    message: str,
    page: ErrorPage,
    headers: dict[str, str] | None = None,
) -> Response:
    """The error page (JSON for an API client), with ``headers``."""
    response = page(request, status_code, message)
    response.headers.update(headers or {})
    return response


def host_of(header: str) -> str:
    """The host name of a ``Host`` header, without its port or brackets."""
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


Handler = Callable[[Request, Exception], Awaitable[Response]]
_PLAIN = {404: "no such page", 405: "method not allowed here"}


def error_handlers(page: ErrorPage) -> tuple[Handler, Handler]:
    """Exception handlers for HTTP errors (404, 405, 413, ...) and for any
    other exception (500): the error page, or JSON for an API client."""

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else ""
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        message = _PLAIN.get(status, detail or "error")
        return error_response(request, status, message, page, headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        # the server logs the exception with its traceback; none goes out
        return error_response(
            request, 500, "internal error: see the dashboard's log", page
        )

    return http_error, server_error


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: at most {limit} bytes")


@dataclass(eq=False)
class Gate:
    """The checks above, around the dashboard's ASGI app."""

    app: ASGIApp
    guard: TokenGuard
    html: ErrorPage
    hosts: frozenset[str] | None = None
    max_body: int = MAX_BODY
    login_required: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refused = self._refused(request)
        if refused is not None:
            await refused(scope, receive, send)
            return
        operator = self._operator(request)
        scope.setdefault("state", {})["operator"] = operator
        if self.login_required and operator is None and not self._open_path(request):
            await self._sign_in_first(request)(scope, receive, send)
            return
        await self.app(scope, self._limited(receive), send)

    def _refused(self, request: Request) -> Response | None:
        if self.hosts is not None:
            host = host_of(request.headers.get("host", ""))
            if host not in self.hosts:
                logger.warning(
                    "dashboard request for another host refused",
                    extra={"action": "dashboard_host_refused", "host": host[:100]},
                )
                return error_response(
                    request, 400, f"unexpected Host header {host[:100]!r}", self.html
                )
        length = request.headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return error_response(request, 400, "bad Content-Length", self.html)
            if int(length) > self.max_body:
                return error_response(
                    request, 413, BodyTooLarge(self.max_body).detail, self.html
                )
        return None

    def _limited(self, receive: Receive) -> Receive:
        """``receive``, refusing (413) once the body goes past the limit."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        return counted

    def _operator(self, request: Request) -> str | None:
        """Who signed this request: a live session, or a valid Bearer token."""
        session = self.guard.session(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            return session.operator
        token = bearer_token(request.headers.get("authorization"))
        return None if token is None else self.guard.operator_of(token)

    def _open_path(self, request: Request) -> bool:
        path = request.url.path.removeprefix(root_of(request))
        return path in ("/login", "/logout") or path.startswith("/static/")

    def _sign_in_first(self, request: Request) -> Response:
        """401 for an API client (429 after too many wrong tokens), the
        sign-in page for a browser."""
        client = client_of(request)
        wait = self.guard.throttle.wait(client)
        if wait > 0:
            return error_response(
                request,
                429,
                "too many wrong tokens: try again later",
                self.html,
                {"Retry-After": str(math.ceil(wait))},
            )
        if "authorization" in request.headers:
            self.guard.throttle.failed(client)
        if wants_json(request):
            return JSONResponse(
                {"detail": "sign in first: send Authorization: Bearer TOKEN"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="sagakit"'},
            )
        here = request.url.path.removeprefix(root_of(request)) or "/"
        if request.url.query:
            here = f"{here}?{request.url.query}"
        return RedirectResponse(
            f"{root_of(request)}/login?next={quote(here, safe='')}", status_code=303
        )
