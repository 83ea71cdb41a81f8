"""Versions of a choreography: events carry the version their conversation
started on, the tracker keeps it, and a service that lacks an event's
version reports it (a ``waiting`` timeline line) and does not handle it:
the broker delivers it again and dead-letters it with the reason."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

from sagakit.adapters.store import Database
from sagakit.adapters.store.event_memory import InMemoryEventStore
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.choreography import (
    Choreography,
    EventBus,
    EventContext,
    EventOutcome,
    Flow,
)
from sagakit.errors import DefinitionError, DefinitionUnavailable
from sagakit.messaging import MalformedMessage, decode
from sagakit.ports.event_store import EventStore
from sagakit.testing import FakeClock

V1 = Choreography(
    "booking",
    [Flow("booking.created"), Flow("bill.paid"), Flow("booking.confirmed")],
)
V2 = Choreography(
    "booking",
    [
        Flow("booking.created", compensated_by="booking.cancelled"),
        Flow("bill.paid"),
        Flow("slot.reserved"),
        Flow("booking.confirmed"),
    ],
    version=2,
)
CHANGED_V1 = Choreography("booking", [Flow("booking.created"), Flow("bill.paid")])
NEEDS_V1 = "needs booking v1, not registered here (have v2)"


@pytest.fixture
def store(sql_database: Database) -> EventStore:
    return sql_database.events


async def settle(check: Callable[[], bool], rounds: int = 2000) -> None:
    """Let the in-process consumers run until ``check()`` holds."""
    for _ in range(rounds):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the consumers never got there")


class Billing:
    """The billing service: it answers booking.created with bill.paid."""

    def __init__(
        self, store: EventStore, transport: InProcessTransport, *versions: Choreography
    ) -> None:
        self.seen: list[int | None] = []
        self.bus = EventBus(
            "billing",
            transport,
            store,
            choreographies=versions,
            clock=FakeClock(),
            max_deliveries=2,
        )

        @self.bus.on("booking.created")
        async def bill(event: dict[str, Any], ctx: EventContext) -> None:
            self.seen.append(ctx.choreography_version)
            await ctx.publish("bill.paid", {"amount": 1})


def booking_bus(
    store: EventStore, transport: InProcessTransport, *versions: Choreography
) -> EventBus:
    return EventBus(
        "booking", transport, store, choreographies=versions, clock=FakeClock()
    )


async def test_a_service_without_the_version_reports_and_does_not_handle(
    store: EventStore,
) -> None:
    transport = InProcessTransport()
    old = booking_bus(store, transport, V1)
    billing = Billing(store, transport, V2)
    await billing.bus.start()
    created = await old.publish("booking.created", {}, correlation_id="b1")
    assert (
        created.headers["choreography_version"],
        created.headers["choreography_fingerprint"],
    ) == ("1", V1.fingerprint)
    dead: list[Any] = []

    async def dead_lettered() -> None:
        while not dead:
            dead.extend(await transport.dead_letters("events.billing"))
            await asyncio.sleep(0.005)

    await asyncio.wait_for(dead_lettered(), 10)
    assert billing.seen == []
    (letter,) = dead
    assert NEEDS_V1 in letter.reason
    assert decode(letter.body).id == created.id
    timeline = await old.tracker.timeline("b1")
    waiting = [r for r in timeline if r.outcome is EventOutcome.WAITING]
    assert [(r.service, r.event_type, r.detail) for r in waiting] == [
        ("billing", "booking.created", NEEDS_V1)  # once for both deliveries
    ]
    tracked = await old.tracker.get("b1")
    assert tracked is not None
    assert (tracked.definition_version, tracked.fingerprint) == (1, V1.fingerprint)
    await billing.bus.stop()

    # a release of billing that keeps v1 beside v2 handles the replayed event
    both = Billing(store, transport, V1, V2)
    await both.bus.start()
    assert await transport.replay_dead_letters("events.billing") == 1
    paid: list[Any] = []
    while not paid:  # the answer it published, on the tracker's timeline
        timeline = await old.tracker.timeline("b1")
        paid = [r for r in timeline if r.event_type == "bill.paid"]
        await asyncio.sleep(0.005)
    await both.bus.stop()
    assert both.seen == [1]
    assert [r.outcome for r in paid] == [EventOutcome.PUBLISHED]
    tracked = await old.tracker.get("b1")
    assert tracked is not None
    assert tracked.definition_version == 1
    await transport.close()


async def test_a_conversation_keeps_the_version_it_started_on(
    store: EventStore,
) -> None:
    transport = InProcessTransport()
    booking = booking_bus(store, transport, V1, V2)
    spy = EventBus("spy", transport, store)
    paid: list[Any] = []

    @spy.on("bill.paid")
    async def watch(event: dict[str, Any], ctx: EventContext) -> None:
        paid.append(ctx.message.headers)

    billing = Billing(store, transport, V1, V2)
    await spy.start()
    await billing.bus.start()
    assert booking.choreography_of("booking.created") is V2
    started = booking.event("booking.created", {}, correlation_id="b1")
    v1 = {"choreography_version": "1", "choreography_fingerprint": V1.fingerprint}
    old = started.model_copy(update={"headers": {**started.headers, **v1}})
    await billing.bus.handle(old)  # a v1 conversation that started earlier
    await booking.publish("booking.created", {}, correlation_id="b2")
    await settle(lambda: len(paid) == 2)
    await billing.bus.stop()
    await spy.stop()
    assert billing.seen == [1, 2]
    versions = sorted(
        (h["choreography_version"], h["choreography_fingerprint"]) for h in paid
    )
    assert versions == [("1", V1.fingerprint), ("2", V2.fingerprint)]
    for cid, version in (("b1", 1), ("b2", 2)):
        tracked = await booking.tracker.get(cid)
        assert tracked is not None
        assert tracked.definition_version == version
    await transport.close()


async def test_events_without_a_version_are_version_1_of_unknown_shape(
    store: EventStore,
) -> None:
    transport = InProcessTransport()
    booking = booking_bus(store, transport, V1)
    event = booking.event("booking.created", {}, correlation_id="b1")
    older = event.model_copy(
        update={
            "headers": {
                k: v
                for k, v in event.headers.items()
                if not k.startswith("choreography_")
            }
        }
    )
    only_v2 = Billing(store, transport, V2)
    with pytest.raises(DefinitionUnavailable, match=re.escape(NEEDS_V1)):
        await only_v2.bus.handle(older)
    changed = Billing(store, transport, CHANGED_V1)  # v1 of another shape
    await changed.bus.handle(older)  # unknown shape: the version is trusted
    assert changed.seen == [1]
    with pytest.raises(DefinitionUnavailable, match="booking v1 changed shape"):
        await changed.bus.handle(event.model_copy(update={"id": "another"}))
    assert changed.seen == [1]
    await transport.close()


def test_a_version_is_an_integer_from_1_and_given_once() -> None:
    with pytest.raises(DefinitionError, match="choreography 'booking': version"):
        Choreography("booking", [Flow("a")], version=0)
    with pytest.raises(Exception, match="'booking' v2 given twice"):
        EventBus("svc", choreographies=[V2, V2])
    assert V1.fingerprint == Choreography("booking", V1.steps, timeout=5).fingerprint
    assert V1.fingerprint != CHANGED_V1.fingerprint
    assert repr(V2) == "Choreography('booking' v2, 4 steps)"


async def test_a_version_that_is_not_a_number_is_dead_lettered_at_once() -> None:
    transport = InProcessTransport()
    store = InMemoryEventStore()
    billing = Billing(store, transport, V1)
    event = booking_bus(store, transport, V1).event(
        "booking.created", {}, correlation_id="b1"
    )
    bad = event.model_copy(
        update={"headers": {**event.headers, "choreography_version": "one"}}
    )
    with pytest.raises(MalformedMessage, match="choreography version 'one'"):
        await billing.bus.handle(bad)
    assert billing.seen == []
    await transport.close()
