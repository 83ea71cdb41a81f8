"""Rendering of the dashboard's HTML pages (Jinja2, always autoescaped)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined

from sagakit import __version__
from sagakit.dashboard import views
from sagakit.dashboard.auth import SESSION_COOKIE, TokenGuard


@dataclass(frozen=True, slots=True)
class Flash:
    """A message at the top of a page: ``kind`` is ``ok`` or ``error``."""

    kind: str
    text: str


def environment() -> Environment:
    """Templates shipped in the package; every value is HTML-escaped."""
    env = Environment(
        loader=PackageLoader("sagakit.dashboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        statuses=views.STATUSES,
        age_choices=views.AGE_CHOICES,
        action_labels=views.ACTION_LABELS,
        action_help=views.ACTION_HELP,
        version=__version__,
    )
    return env


def root_of(request: Request) -> str:
    """The path the app is mounted at (``""`` at the top)."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def wants_json(request: Request) -> bool:
    """An API client: under ``/api/``, with an ``Authorization`` header, or
    asking for JSON rather than HTML."""
    if request.url.path.startswith(f"{root_of(request)}/api/"):
        return True
    if "authorization" in request.headers:
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def client_of(request: Request) -> str:
    """The client's address (what the throttle counts by)."""
    return request.client.host if request.client is not None else ""


def saga_url(request: Request, saga_id: str) -> str:
    return f"{root_of(request)}/sagas/{quote(saga_id, safe='')}"


def workflow_url(request: Request, app: str, instance_id: str) -> str:
    """Where a workflow instance is shown: its app and id identify it."""
    where = f"{quote(app, safe='')}/{quote(instance_id, safe='')}"
    return f"{root_of(request)}/workflows/{where}"


class Pages:
    """Renders templates with what every page needs (auth state, flashes)."""

    def __init__(self, guard: TokenGuard, *, actions_enabled: bool) -> None:
        self.env = environment()
        self.guard = guard
        self.actions_enabled = actions_enabled

    def render(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any],
        *,
        status_code: int = 200,
        flashes: Iterable[Flash] = (),
    ) -> HTMLResponse:
        session = self.guard.session(request.cookies.get(SESSION_COOKIE))
        html = self.env.get_template(name).render(
            root=root_of(request),
            read_only=self.guard.read_only,
            shared=self.guard.shared,
            actions_enabled=self.actions_enabled,
            authed=session is not None,
            operator="" if session is None else session.operator,
            csrf="" if session is None else session.csrf,
            flashes=list(flashes),
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def error(
        self,
        request: Request,
        status_code: int,
        message: str,
        back: str | None = None,
        *,
        section: str = "sagas",
    ) -> Response:
        """An error page; ``section`` (``sagas`` or ``workflows``) is the
        list it links to. An API client (:func:`wants_json`) gets
        ``{"detail": message}`` instead."""
        if wants_json(request):
            return JSONResponse({"detail": message}, status_code=status_code)
        return self.render(
            request,
            "error.html",
            {
                "status_code": status_code,
                "message": message,
                "back": back,
                "section": section,
            },
            status_code=status_code,
        )
