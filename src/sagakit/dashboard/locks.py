"""The semantic locks, as ``sagakit locks`` lists them: who holds each key
(since when, how many queue for it) and who waits, each saga and key a
link. ``/locks`` (``?prefix=`` or ``?saga=``), its JSON twin ``/api/locks``,
and the saga page's own locks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse

from sagakit import admin
from sagakit.dashboard.page import Pages, root_of
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
    """``/locks`` and ``/api/locks``."""

    store: SagaStore
    pages: Pages
    clock: Clock

    async def table(self, prefix: str | None, saga: str | None) -> dict[str, Any]:
        prefix = (prefix or "").strip()[:MAX_FILTER] or None
        saga = (saga or "").strip()[:MAX_FILTER] or None
        found = await admin.locks(self.store, prefix=prefix, saga_id=saga)
        return locks_json(found, self.clock.now())

    async def of_saga(self, saga_id: str) -> dict[str, Any]:
        """The keys one saga holds, the queues it waits in, and who holds
        the keys it waits for."""
        found = await admin.locks(self.store, saga_id=saga_id)
        waited = {w.key for w in found.waiters}
        blockers = await self.store.lock_holders(waited) if waited else {}
        mine = {h.key for h in found.holders}
        holders = [*found.holders, *(h for k, h in blockers.items() if k not in mine)]
        holders.sort(key=lambda h: h.key)
        return locks_json(LockTable(holders, found.waiters), self.clock.now())

    async def page(
        self, request: Request, prefix: str | None = None, saga: str | None = None
    ) -> HTMLResponse:
        shown = await self.table(prefix, saga)
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
        )

    async def api(
        self, prefix: str | None = None, saga: str | None = None
    ) -> JSONResponse:
        """Holders and waiters of semantic locks (``sagakit locks``)."""
        return JSONResponse(await self.table(prefix, saga))


__all__ = ["LockViews", "key_url"]
