"""The event store contract: written once, subclassed per adapter."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any, cast

import pytest

from sagakit.choreography import Choreography, Flow
from sagakit.errors import StoreError
from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventOutcome,
    EventRecord,
    EventStore,
    StagedEvent,
    TransactionalOutbox,
)
from sagakit.testing.contracts.definitions import ChoreographyVersionsContract

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


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction on a caller's own SQLite connection."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def staged(n: int, service: str = "orders") -> StagedEvent:
    return StagedEvent(
        message_id=f"{service}-{n}",
        service=service,
        event_type="order.created",
        correlation_id=f"o{n}",
        body=b'{"v": 1, "n": %d}' % n,
        created_at=float(n),
    )


def ids(events: list[StagedEvent]) -> list[str]:
    return [e.message_id for e in events]


class Staging:
    """How a test stages events: a connection of the adapter's own kind and
    its transactions (a subclass per adapter)."""

    transactional = True
    """False for a store without transactions (nothing to roll back)."""

    def __init__(self, store: EventStore) -> None:
        self.outbox = cast(TransactionalOutbox, store)

    async def commit(self, *events: StagedEvent) -> list[bool]:
        """Stage ``events`` in one transaction that commits."""
        raise NotImplementedError

    async def roll_back(self, *events: StagedEvent) -> None:
        """Stage ``events`` in one transaction, then raise ``RuntimeError``
        ("roll back") inside it."""
        raise NotImplementedError

    def wrong_connection(self) -> Any:
        """A connection the store must refuse."""
        return object()


class EventStoreContract(ChoreographyVersionsContract):
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

    # -- the event outbox ----------------------------------------------------

    async def test_staged_events_are_held_by_one_claimer_until_the_hold_expires(
        self, store: EventStore, staging: Staging
    ) -> None:
        outbox = staging.outbox
        assert await staging.commit(staged(1), staged(2), staged(1, "mail")) == [
            True,
            True,
            True,
        ]
        first = await outbox.claim_staged("orders", "a", now=100.0, hold=30.0)
        assert first == [staged(1), staged(2)]  # its service's, in staging order
        assert await outbox.claim_staged("orders", "b", now=110.0, hold=30.0) == []
        mail = await outbox.claim_staged("mail", "b", now=110.0, hold=30.0)
        assert ids(mail) == ["mail-1"]
        # the holder takes its own again, which renews the hold
        again = await outbox.claim_staged("orders", "a", now=120.0, hold=30.0)
        assert ids(again) == ["orders-1", "orders-2"]
        assert await outbox.claim_staged("orders", "b", now=140.0, hold=30.0) == []
        # a's hold (until 150) expired: a died; b takes them
        taken = await outbox.claim_staged("orders", "b", now=151.0, hold=30.0)
        assert ids(taken) == ["orders-1", "orders-2"]
        assert await outbox.claim_staged("orders", "a", now=151.0, hold=30.0) == []

    async def test_forgotten_events_are_not_claimed_again(
        self, store: EventStore, staging: Staging
    ) -> None:
        outbox = staging.outbox
        await staging.commit(staged(1), staged(2), staged(3))
        one = await outbox.claim_staged("orders", "a", now=1.0, hold=5.0, limit=1)
        assert ids(one) == ["orders-1"]
        await outbox.forget_staged(["orders-1", "unknown"])
        await outbox.forget_staged([])
        rest = await outbox.claim_staged("orders", "a", now=2.0, hold=5.0)
        assert ids(rest) == ["orders-2", "orders-3"]
        await outbox.forget_staged(ids(rest))
        assert await outbox.claim_staged("orders", "b", now=100.0, hold=5.0) == []

    async def test_an_id_staged_twice_keeps_the_first(
        self, store: EventStore, staging: Staging
    ) -> None:
        other = StagedEvent("orders-1", "orders", "order.changed", "o9", b"{}", 2.0)
        assert await staging.commit(staged(1)) == [True]
        assert await staging.commit(other) == [False]
        claimed = await staging.outbox.claim_staged("orders", "a", now=1.0, hold=5.0)
        assert claimed == [staged(1)]

    async def test_concurrent_claimers_take_each_event_once(
        self, store: EventStore, staging: Staging
    ) -> None:
        await staging.commit(*(staged(n) for n in range(20)))
        batches = await asyncio.gather(
            *(
                staging.outbox.claim_staged(
                    "orders", f"c{n}", now=1.0, hold=30.0, limit=5
                )
                for n in range(6)
            )
        )
        taken = [i for batch in batches for i in ids(batch)]
        assert sorted(taken) == sorted(f"orders-{n}" for n in range(20))

    async def test_a_rolled_back_staging_leaves_nothing(
        self, store: EventStore, staging: Staging
    ) -> None:
        if not staging.transactional:
            pytest.skip(f"{type(store).__name__} has no transactions")
        with pytest.raises(RuntimeError, match="roll back"):
            await staging.roll_back(staged(1), staged(2))
        assert await staging.outbox.claim_staged("orders", "a", now=1.0, hold=5) == []
        assert await staging.commit(staged(1)) == [True]  # the id is free

    async def test_staging_on_a_wrong_connection_is_refused(
        self, store: EventStore, staging: Staging
    ) -> None:
        wrong = staging.wrong_connection()
        with pytest.raises(StoreError, match=type(wrong).__name__):
            await staging.outbox.stage_event_on(wrong, staged(1))
