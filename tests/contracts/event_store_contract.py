"""The event store contract: written once, subclassed per adapter."""

from __future__ import annotations

import asyncio

from sagakit.choreography import Choreography, Flow
from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventOutcome,
    EventRecord,
    EventStore,
)

FLOW = Choreography(
    "order",
    [
        Flow("order.created", compensated_by="order.cancelled"),
        Flow("stock.reserved", failed_by="stock.missing"),
        Flow("order.confirmed"),
    ],
    timeout=10,
)
S = ChoreographyStatus


def event(
    cid: str,
    event_type: str,
    at: float,
    outcome: EventOutcome = EventOutcome.PUBLISHED,
    *,
    service: str = "orders",
) -> EventRecord:
    return EventRecord(
        correlation_id=cid,
        choreography=FLOW.name,
        service=service,
        event_type=event_type,
        message_id=f"{cid}-{event_type}-{outcome.value}",
        outcome=outcome,
        recorded_at=at,
        detail="to events.stock" if outcome is EventOutcome.PUBLISHED else None,
    )


class EventStoreContract:
    async def test_routes_fan_out_to_one_queue_per_service(
        self, store: EventStore
    ) -> None:
        await store.subscribe("stock", "events.stock", ["order.created"], now=1.0)
        await store.subscribe(
            "mail", "events.mail", ["order.created", "order.confirmed"], now=1.0
        )
        assert await store.subscribers("order.created") == [
            "events.mail",
            "events.stock",
        ]
        assert await store.subscribers("order.confirmed") == ["events.mail"]
        assert await store.subscribers("nobody.cares") == []
        # re-subscribing moves the service's queue; no second route
        await store.subscribe("stock", "events.stock.v2", ["order.created"], now=2.0)
        assert await store.subscribers("order.created") == [
            "events.mail",
            "events.stock.v2",
        ]

    async def test_inbox_remembers_a_message_once(self, store: EventStore) -> None:
        assert await store.inbox_reply("stock.events", "m1") is None
        assert await store.record_inbox("stock.events", "m1", b"[]")
        assert not await store.record_inbox("stock.events", "m1", b"other")
        assert await store.inbox_reply("stock.events", "m1") == b"[]"
        assert await store.inbox_reply("mail.events", "m1") is None

    async def test_statuses_follow_the_declared_flow(self, store: EventStore) -> None:
        p = FLOW.progress
        assert await store.record_event(event("ok", "order.created", 1.0), p) == (
            S.IN_PROGRESS
        )
        consumed = event("ok", "order.created", 2.0, EventOutcome.CONSUMED)
        assert await store.record_event(consumed, p) is S.IN_PROGRESS
        await store.record_event(event("ok", "stock.reserved", 3.0), p)
        assert await store.record_event(event("ok", "order.confirmed", 4.0), p) is (
            S.SUCCEEDED
        )
        tracked = await store.tracked("ok")
        assert tracked is not None
        assert (tracked.name, tracked.status) == ("order", S.SUCCEEDED)
        assert (tracked.started_at, tracked.updated_at, tracked.deadline) == (
            1.0,
            4.0,
            14.0,
        )

        await store.record_event(event("bad", "order.created", 1.0), p)
        assert await store.record_event(event("bad", "stock.missing", 2.0), p) is (
            S.COMPENSATING
        )
        assert await store.record_event(event("bad", "order.cancelled", 3.0), p) is (
            S.COMPENSATED
        )

    async def test_timeline_keeps_every_line_in_order(self, store: EventStore) -> None:
        p = FLOW.progress
        lines = [
            event("t", "order.created", 1.0),
            event("t", "order.created", 2.0, EventOutcome.CONSUMED, service="stock"),
            event("t", "order.created", 3.0, EventOutcome.DUPLICATE, service="stock"),
            event("t", "stock.reserved", 4.0, EventOutcome.FAILED, service="mail"),
        ]
        for line in lines:
            await store.record_event(line, p)
        assert await store.timeline("t") == lines
        assert await store.timeline("other") == []
        tracked = await store.tracked("t")
        assert tracked is not None
        # duplicates and failures are not progress
        assert (tracked.updated_at, tracked.status) == (2.0, S.IN_PROGRESS)

    async def test_untracked_events_only_go_to_the_timeline(
        self, store: EventStore
    ) -> None:
        assert await store.record_event(event("u", "order.created", 1.0)) is None
        assert await store.tracked("u") is None
        assert len(await store.timeline("u")) == 1

    async def test_overdue_choreographies_are_flagged_once(
        self, store: EventStore
    ) -> None:
        p = FLOW.progress
        await store.record_event(event("slow", "order.created", 1.0), p)
        await store.record_event(event("fast", "order.created", 1.0), p)
        await store.record_event(event("fast", "stock.reserved", 8.0), p)
        await store.record_event(event("done", "order.confirmed", 1.0), p)
        assert await store.mark_stalled(now=11.0) == []  # deadline 11.0 not past
        flagged = await store.mark_stalled(now=12.0)
        assert [t.correlation_id for t in flagged] == ["slow"]
        assert flagged[0].status is S.STALLED
        assert await store.mark_stalled(now=12.0) == []
        stalled = await store.list_tracked(status=S.STALLED)
        assert [t.correlation_id for t in stalled] == ["slow"]
        # progress brings it back
        await store.record_event(event("slow", "stock.reserved", 13.0), p)
        tracked = await store.tracked("slow")
        assert tracked is not None
        assert tracked.status is S.IN_PROGRESS
        newest = await store.list_tracked(limit=1)
        assert [t.correlation_id for t in newest] == ["slow"]

    async def test_concurrent_recorders_lose_no_event(self, store: EventStore) -> None:
        p = FLOW.progress
        await asyncio.gather(
            store.record_event(event("c", "order.created", 1.0), p),
            store.record_event(event("c", "stock.reserved", 1.0), p),
            store.record_event(event("c", "order.confirmed", 1.0), p),
        )
        tracked = await store.tracked("c")
        assert tracked is not None
        assert tracked.status is S.SUCCEEDED
