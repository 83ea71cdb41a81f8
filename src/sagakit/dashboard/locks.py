"""The semantic locks, as ``sagakit locks`` lists them: who holds each key
(since when, how many queue for it) and who waits, each saga and key a
link. ``/locks`` (``?prefix=`` or ``?saga=``), its JSON twin ``/api/locks``,
the saga page's own locks, and ``POST /locks/release`` (``sagakit locks
release``: a key taken from its holder, with who and why in that saga's
history; signed in as for the saga actions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from sagakit import admin
from sagakit.dashboard.actions import MAX_REASON, ActionRoutes, Denied
from sagakit.dashboard.forms import body_fields
from sagakit.dashboard.page import Flash, Pages, root_of
from sagakit.errors import StateError
from sagakit.ports.clock import Clock
from sagakit.ports.locks import LockTable
from sagakit.ports.store import SagaStore
from sagakit.views.locks import locks_json

MAX_FILTER = 200
"""Longest key prefix or saga id a filter takes (longer ones are cut)."""


def key_url(request: Request, key: str) -> str:
    """The locks page showing ``key`` (and the keys it starts)."""
    return f"{root_of(request)}/locks?{urlencode({'prefix': key})}"


@dataclass(eq=False)
class LockViews:
    """``/locks``, ``/api/locks`` and ``POST /locks/release``; ``actions``
    checks who may release (as for the saga actions)."""

    store: SagaStore
    pages: Pages
    clock: Clock
    actions: ActionRoutes | None = None
    """Set once the action routes exist (they need the saga page, which
    shows locks)."""

    async def table(self, prefix: str | None, saga: str | None) -> dict[str, Any]:
        prefix = (prefix or "").strip()[:MAX_FILTER] or None
        saga = (saga or "").strip()[:MAX_FILTER] or None
        found = await admin.locks(self.store, prefix=prefix, saga_id=saga)
        held_up = await admin.held_up(self.store, found)
        return locks_json(found, self.clock.now(), held_up)

    async def of_saga(self, saga_id: str) -> dict[str, Any]:
        """The keys one saga holds, the queues it waits in, and who holds
        the keys it waits for."""
        found = await admin.locks(self.store, saga_id=saga_id)
        waited = {w.key for w in found.waiters}
        blockers = await self.store.lock_holders(waited) if waited else {}
        mine = {h.key for h in found.holders}
        holders = [*found.holders, *(h for k, h in blockers.items() if k not in mine)]
        holders.sort(key=lambda h: h.key)
        shown = LockTable(holders, found.waiters)
        held_up = await admin.held_up(self.store, shown)
        return locks_json(shown, self.clock.now(), held_up)

    async def page(
        self, request: Request, prefix: str | None = None, saga: str | None = None
    ) -> HTMLResponse:
        shown = await self.table(prefix, saga)
        flashes = []
        released = request.query_params.get("released")
        if released:
            flashes.append(Flash("ok", f"Released {released[:MAX_FILTER]}."))
        return self.pages.render(
            request,
            "locks.html",
            {
                "section": "locks",
                "prefix": (prefix or "").strip(),
                "saga": (saga or "").strip(),
                "holders": shown["holders"],
                "waiters": shown["waiters"],
            },
            flashes=flashes,
        )

    async def release(self, request: Request) -> Response:
        """Take a key from its holder (``key``, ``reason`` and who: the
        signed-in operator, or ``operator``)."""
        api = "authorization" in request.headers
        back = f"{root_of(request)}/locks"
        actions = self.actions
        assert actions is not None  # noqa: S101 - create_app sets it
        try:
            fields = await body_fields(request)
            creds = actions.authorize(request, fields)
            by, key, reason = _release_of(request.state.operator, fields)
            done = await admin.release_lock(self.store, key, reason=reason, by=by)
        except Denied as exc:
            return actions.denied(request, api, exc, back)
        except StateError as exc:
            return actions.denied(request, api, Denied(409, str(exc)), back)
        if api:
            return JSONResponse(
                {"key": key, "saga_id": done.record.saga_id, "by": by, "released": True}
            )
        query = urlencode({"prefix": key, "released": key})
        response = RedirectResponse(f"{back}?{query}", status_code=303)
        if creds.form_token:
            actions.remember(request, response, by)
        return response

    async def api(
        self, prefix: str | None = None, saga: str | None = None
    ) -> JSONResponse:
        """Holders and waiters of semantic locks (``sagakit locks``)."""
        return JSONResponse(await self.table(prefix, saga))


def _release_of(by: str | None, fields: Mapping[str, str]) -> tuple[str, str, str]:
    """Who releases which key and why; ``Denied`` (400) for what is missing."""
    key = (fields.get("key") or "").strip()
    reason = (fields.get("reason") or "").strip()[:MAX_REASON]
    if by is None or not reason or not key:
        raise Denied(400, "a release needs a key, who you are and a reason")
    return by, key, reason


__all__ = ["LockViews", "key_url"]
