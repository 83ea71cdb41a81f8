"""The saga list: live counts, filters, pages (each after the last saga of
the one before: keyset paging, as deep as the store goes), the search box,
and which unfinished sagas nobody drives (orphaned, unclaimed)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse

from sagakit import admin
from sagakit.dashboard import views
from sagakit.dashboard.actions import Operator
from sagakit.dashboard.choreographies import EventSource, choreography_url
from sagakit.dashboard.page import Flash, Pages
from sagakit.dashboard.search import Cursor, Found, parse_cursor, parse_query, search
from sagakit.dashboard.views import DEFAULT_LIMIT, Counts, parse_limit
from sagakit.engine.state import SagaStatus
from sagakit.ports.clock import Clock
from sagakit.ports.store import SagaRecord, SagaStore


@dataclass(frozen=True, slots=True)
class Filters:
    """What the list shows: ``""`` means any; ``after`` is the page."""

    status: str = ""
    saga: str = ""
    age: str = ""
    limit: int = DEFAULT_LIMIT
    query: str = ""
    after: Cursor | None = None

    def link(self, after: Cursor | None) -> str:
        """The query string of this list at page ``after`` (None: the first)."""
        fields = {"status": self.status, "saga": self.saga, "age": self.age}
        shown: dict[str, Any] = {k: v for k, v in fields.items() if v}
        if self.limit != DEFAULT_LIMIT:
            shown["limit"] = self.limit
        if after is not None:
            shown["after"] = after.text()
        return f"?{urlencode(shown)}" if shown else ""


async def status_counts(store: SagaStore, saga_name: str | None = None) -> Counts:
    """How many instances are in each status (one COUNT query)."""
    return Counts.of(await store.count_by_status(saga_name), SagaStatus)


def filters_of(request: Request) -> Filters:
    q = request.query_params
    return Filters(
        status=(q.get("status") or "").strip().lower(),
        saga=(q.get("saga") or "").strip(),
        age=(q.get("age") or "").strip(),
        limit=parse_limit(q.get("limit")),
        query=parse_query(q.get("q")),
        after=parse_cursor(q.get("after")),
    )


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the list, and where the next one starts (None: last)."""

    records: list[SagaRecord]
    next: Cursor | None


@dataclass(eq=False)
class ListViews:
    """``/`` and ``/api/sagas``, ``/api/search``, ``/api/counts``."""

    store: SagaStore
    ops: Operator
    pages: Pages
    clock: Clock
    events: EventSource

    async def select(self, filters: Filters) -> Page:
        """The list's rows: ``sagakit list`` with the same filters, from
        ``filters.after`` on."""
        age = views.parse_age(filters.age)
        after = filters.after
        records = await admin.list_sagas(
            self.store,
            status=views.parse_status(filters.status),
            saga=filters.saga or None,
            older_than=None if age is None or age.newer else age.seconds,
            limit=filters.limit,
            clock=self.clock,
            after=None if after is None else (after.created_at, after.saga_id),
        )
        kept = records
        if age is not None and age.newer:  # newest first: the newer ones lead
            now = self.clock.now()
            kept = [r for r in records if age.keeps(r, now)]
        full = len(records) == filters.limit and len(kept) == len(records)
        return Page(kept, Cursor.after(kept[-1]) if full else None)

    async def index(self, request: Request) -> HTMLResponse:
        flashes: list[Flash] = []
        status_code = 200
        found: Found | None = None
        page = Page([], None)
        try:
            filters = filters_of(request)
            if filters.query:
                found = await search(
                    self.store, self.events, filters.query, limit=filters.limit
                )
            else:
                page = await self.select(filters)
        except views.FilterError as exc:
            filters, status_code = Filters(), 400
            flashes.append(Flash("error", str(exc)))
        records = [h.record for h in found.hits] if found else page.records
        counts = await status_counts(self.store, filters.saga or None)
        return self.pages.render(
            request,
            "list.html",
            {
                "filters": filters,
                "rows": views.rows(
                    records, self.clock.now(), await admin.drivers(self.store, records)
                ),
                "found": found,
                "matched": [h.matched for h in found.hits] if found else [],
                "conversation_url": (
                    choreography_url(request, found.query)
                    if found and found.conversation
                    else ""
                ),
                "next_page": filters.link(page.next) if page.next else "",
                "first_page": filters.link(None) or "?" if filters.after else "",
                "counts": counts,
                "saga_names": sorted(self.ops.saga_names),
            },
            status_code=status_code,
            flashes=flashes,
        )

    async def counts(self, saga: str | None = None) -> JSONResponse:
        found = await status_counts(self.store, saga or None)
        return JSONResponse(found.as_json())

    async def api_list(self, request: Request) -> JSONResponse:
        try:
            filters = filters_of(request)
            page = await self.select(replace(filters, query=""))
        except views.FilterError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        found = await admin.drivers(self.store, page.records)
        return JSONResponse(
            {
                "sagas": [
                    views.record_json(r) | {"driver": found[r.saga_id].as_json()}
                    for r in page.records
                ],
                "next": None if page.next is None else page.next.text(),
            }
        )

    async def api_search(self, request: Request) -> JSONResponse:
        try:
            filters = filters_of(request)
        except views.FilterError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        if not filters.query:
            return JSONResponse({"detail": "search for what? (q=...)"}, status_code=400)
        found = await search(
            self.store, self.events, filters.query, limit=filters.limit
        )
        conversation = found.conversation
        return JSONResponse(
            {
                "query": found.query,
                "sagas": [
                    views.record_json(h.record) | {"matched": h.matched}
                    for h in found.hits
                ],
                "choreography": None
                if conversation is None
                else {
                    "correlation_id": conversation.correlation_id,
                    "name": conversation.name,
                    "status": conversation.status,
                },
                "context_scan": found.scanned,
            }
        )


__all__ = ["Filters", "ListViews", "Page", "filters_of", "status_counts"]
