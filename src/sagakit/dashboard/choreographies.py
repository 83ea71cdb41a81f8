"""A choreography's page: where one correlation id stands and its events,
as ``sagakit show <correlation id>`` prints them (read-only).

The events are read from the choreography tables of the saga store's
database (``event_store_for``); a database without them has no
choreographies to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from sagakit.adapters.store import event_store_for
from sagakit.dashboard.page import Pages, root_of
from sagakit.dashboard.views import Fact
from sagakit.errors import StoreError
from sagakit.ports.event_store import EventRecord, EventStore, TrackedChoreography
from sagakit.ports.store import SagaStore
from sagakit.views.format import local_time, milliseconds


def choreography_url(request: Request, correlation_id: str) -> str:
    return f"{root_of(request)}/choreographies/{quote(correlation_id, safe='')}"


@dataclass(frozen=True, slots=True)
class Conversation:
    """One correlation id's tracker row (if a declared choreography has it)
    and its events."""

    correlation_id: str
    tracked: TrackedChoreography | None
    timeline: list[EventRecord]

    @property
    def name(self) -> str:
        if self.tracked is not None:
            return self.tracked.name
        names = sorted({r.choreography for r in self.timeline if r.choreography})
        return ", ".join(names) or "(undeclared)"

    @property
    def status(self) -> str:
        return "untracked" if self.tracked is None else self.tracked.status.value


class EventSource:
    """The choreography tables of the saga store's database, looked for
    when first needed (and again while missing)."""

    def __init__(self, store: SagaStore) -> None:
        self.store = store
        self.found: EventStore | None = None

    def get(self) -> EventStore | None:
        if self.found is None:
            try:
                self.found = event_store_for(self.store)
            except StoreError:
                return None
        return self.found

    async def conversation(self, correlation_id: str) -> Conversation | None:
        """The events of ``correlation_id``, or None if there are none."""
        events = self.get()
        if events is None:
            return None
        try:
            timeline = await events.timeline(correlation_id)
            tracked = await events.tracked(correlation_id)
        except StoreError:  # no choreography tables (a database never migrated)
            return None
        if not timeline and tracked is None:
            return None
        return Conversation(correlation_id, tracked, timeline)


@dataclass(frozen=True, slots=True)
class EventLine:
    offset_ms: str
    time: str
    service: str
    event_type: str
    outcome: str
    message_id: str
    detail: str


def facts(found: Conversation) -> list[Fact]:
    out = [
        Fact("choreography", found.name),
        Fact("correlation id", found.correlation_id, "mono"),
        Fact("status", found.status, f"status {found.status}"),
    ]
    tracked = found.tracked
    if tracked is not None:
        shape = tracked.fingerprint or "unknown"
        out += [
            Fact("definition", f"{tracked.name} v{tracked.definition_version}", "mono"),
            Fact("shape", shape, "mono"),
            Fact("started", local_time(tracked.started_at)),
            Fact("last progress", local_time(tracked.updated_at)),
            Fact("deadline", local_time(tracked.deadline)),
        ]
    return out


def lines(timeline: Sequence[EventRecord]) -> list[EventLine]:
    start = timeline[0].recorded_at if timeline else 0.0
    return [
        EventLine(
            offset_ms=milliseconds(r.recorded_at - start),
            time=local_time(r.recorded_at),
            service=r.service,
            event_type=r.event_type,
            outcome=r.outcome.value,
            message_id=r.message_id,
            detail=r.detail or "",
        )
        for r in timeline
    ]


class ChoreographyViews:
    """``/choreographies/{correlation id}`` and its JSON twin."""

    def __init__(self, source: EventSource, pages: Pages) -> None:
        self.source = source
        self.pages = pages

    async def show(self, request: Request, correlation_id: str) -> Response:
        found = await self.source.conversation(correlation_id)
        if found is None:
            return self.pages.error(
                request, 404, f"no choreography events for {correlation_id!r}"
            )
        return self.pages.render(
            request,
            "choreography.html",
            {
                "found": found,
                "facts": facts(found),
                "lines": lines(found.timeline),
                "url": choreography_url(request, correlation_id),
            },
        )

    async def api_show(self, correlation_id: str) -> JSONResponse:
        found = await self.source.conversation(correlation_id)
        if found is None:
            detail = f"no choreography events for {correlation_id!r}"
            return JSONResponse({"detail": detail}, status_code=404)
        return JSONResponse(
            {
                "correlation_id": correlation_id,
                "choreography": found.name,
                "status": found.status,
                "events": [
                    {
                        "service": r.service,
                        "event_type": r.event_type,
                        "outcome": r.outcome.value,
                        "message_id": r.message_id,
                        "recorded_at": r.recorded_at,
                        "detail": r.detail,
                    }
                    for r in found.timeline
                ],
            }
        )


__all__ = ["ChoreographyViews", "Conversation", "EventSource", "choreography_url"]
