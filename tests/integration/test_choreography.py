"""The choreography core in one process: in-process transport, SQLite (or the
in-memory store), a fake clock. Fan-out, deduplication, effect-once handlers,
tracker statuses and stalled detection; the event outbox (``publish_on``) on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import BaseModel

from sagakit.adapters.store import open_event_store
from sagakit.adapters.store.event_memory import InMemoryEventStore
from sagakit.adapters.store.event_sqlite import SQLiteEventStore
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.choreography import (
    Choreography,
    ChoreographyStatus,
    EventBus,
    EventContext,
    EventOutcome,
    Flow,
    Tracker,
)
from sagakit.errors import SagaError, StoreError, TransportError
from sagakit.messaging import Envelope, decode
from sagakit.ports.event_store import EventStore, TransactionalOutbox
from sagakit.testing import FakeClock
from sagakit.testing.contracts.event_store import transaction

BOOKING = Choreography(
    "booking",
    [
        Flow("booking.created", compensated_by="booking.failed"),
        Flow("bill.paid", compensated_by="bill.refunded"),
        Flow("slot.reserved", failed_by="slot.unavailable"),
        Flow("booking.confirmed"),
    ],
    timeout=30,
)
S = ChoreographyStatus


class Booking(BaseModel):
    booking_id: str
    slot: str


async def settle(check: Callable[[], bool], rounds: int = 2000) -> None:
    """Let the in-process consumers run until ``check()`` holds."""
    for _ in range(rounds):
        if check():
            return
        await asyncio.sleep(0)
    pytest.fail("the services did not settle")


async def settle_status(tracker: Tracker, cid: str, status: S) -> None:
    """Until the last timeline line (written after the handler) is in."""
    for _ in range(2000):
        if await tracker.status(cid) is status:
            return
        await asyncio.sleep(0)
    pytest.fail(f"{cid} is {await tracker.status(cid)}, not {status}")


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    events: EventStore = (
        SQLiteEventStore(tmp_path / "events.db")
        if request.param == "sqlite"
        else InMemoryEventStore()
    )
    yield events
    await events.close()


@pytest.fixture
async def transport() -> AsyncIterator[InProcessTransport]:
    carrier = InProcessTransport()
    yield carrier
    await carrier.close()


class Group:
    """Services in one process, started and stopped together."""

    buses: dict[str, EventBus]

    async def start(self) -> None:
        for bus in self.buses.values():
            await bus.start()

    async def stop(self) -> None:
        for bus in self.buses.values():
            await bus.stop()


class Services(Group):
    """Booking, billing and parking reacting to each other (in memory)."""

    def __init__(self, transport: InProcessTransport, store: EventStore) -> None:
        self.clock = FakeClock()
        self.buses = {}
        for name in ("booking", "billing", "parking"):
            self.buses[name] = EventBus(
                name, transport, store, choreographies=[BOOKING], clock=self.clock
            )
        self.bookings: dict[str, str] = {}
        self.bills: dict[str, str] = {}
        self.slots: dict[str, str] = {"A": "available"}
        self.effects: list[tuple[str, str]] = []
        booking, billing, parking = (self.buses[n] for n in self.buses)

        @billing.on("booking.created")
        async def create_bill(event: Booking, ctx: EventContext) -> None:
            self.bills[event.booking_id] = "pending"
            self.effects.append(("billing", "bill"))

        @parking.on("bill.paid")
        async def reserve(event: Booking, ctx: EventContext) -> None:
            if self.slots[event.slot] == "available":
                self.slots[event.slot] = "reserved"
                self.effects.append(("parking", "reserve"))
                await ctx.publish("slot.reserved", event)
            else:
                await ctx.publish("slot.unavailable", event)

        @billing.on("slot.unavailable")
        async def refund(event: Booking, ctx: EventContext) -> None:
            self.bills[event.booking_id] = "refunded"
            self.effects.append(("billing", "refund"))
            await ctx.publish("bill.refunded", event)

        @booking.on("slot.reserved")
        async def confirm(event: Booking, ctx: EventContext) -> None:
            self.bookings[event.booking_id] = "done"
            await ctx.publish("booking.confirmed", event)

        @booking.on("slot.unavailable")
        async def fail(event: Booking, ctx: EventContext) -> None:
            self.bookings[event.booking_id] = "failed"
            await ctx.publish("booking.failed", event)

    async def book(self, booking_id: str, slot: str = "A") -> None:
        self.bookings[booking_id] = "pending"
        await self.buses["booking"].publish(
            "booking.created",
            Booking(booking_id=booking_id, slot=slot),
            correlation_id=booking_id,
        )

    async def pay(self, booking_id: str, slot: str = "A") -> Envelope:
        await settle(lambda: booking_id in self.bills)  # billing made the bill
        self.bills[booking_id] = "paid"
        return await self.buses["billing"].publish(
            "bill.paid",
            {"booking_id": booking_id, "slot": slot},
            correlation_id=booking_id,
        )


@pytest.fixture
async def services(
    transport: InProcessTransport, store: EventStore
) -> AsyncIterator[Services]:
    group = Services(transport, store)
    await group.start()
    yield group
    await group.stop()


async def test_events_fan_out_and_the_booking_is_confirmed(
    services: Services, store: EventStore
) -> None:
    await services.book("b1")
    await services.pay("b1")
    await settle(lambda: services.bookings["b1"] == "done")
    assert services.slots["A"] == "reserved"

    tracker = Tracker(store, clock=services.clock)
    assert await tracker.status("b1") is S.SUCCEEDED
    lines = [
        (r.service, r.event_type, r.outcome.value) for r in await tracker.timeline("b1")
    ]
    assert lines == [
        ("booking", "booking.created", "published"),
        ("billing", "booking.created", "consumed"),
        ("billing", "bill.paid", "published"),
        ("parking", "bill.paid", "consumed"),
        ("parking", "slot.reserved", "published"),
        ("booking", "slot.reserved", "consumed"),
        ("booking", "booking.confirmed", "published"),
    ]


async def test_an_unavailable_slot_refunds_and_fails_the_booking(
    services: Services, store: EventStore
) -> None:
    services.slots["A"] = "reserved"
    await services.book("b2")
    await services.pay("b2")
    await settle(
        lambda: (
            services.bookings["b2"] == "failed" and services.bills["b2"] == "refunded"
        )
    )
    # fan-out: one slot.unavailable reached both billing and booking
    consumed = [
        r.service
        for r in await store.timeline("b2")
        if r.event_type == "slot.unavailable" and r.outcome is EventOutcome.CONSUMED
    ]
    assert sorted(consumed) == ["billing", "booking"]
    await settle(lambda: len(services.effects) == 2)
    tracker = Tracker(store, clock=services.clock)
    await settle(lambda: True)
    for _ in range(50):
        if await tracker.status("b2") is S.COMPENSATED:
            break
        await asyncio.sleep(0)
    assert await tracker.status("b2") is S.COMPENSATED


async def test_a_repeated_bill_paid_neither_reserves_again_nor_refunds(
    services: Services, store: EventStore, transport: InProcessTransport
) -> None:
    await services.book("b3")
    paid = await services.pay("b3")
    await settle(lambda: services.bookings["b3"] == "done")
    parking = services.buses["parking"]
    booking = services.buses["booking"]

    # the broker delivers the same bill.paid again
    await transport.publish(parking.queue, paid)
    await settle(lambda: parking.duplicates == 1 and booking.duplicates == 1)
    # the stored slot.reserved was sent again (same id) and dropped by booking
    assert services.effects == [("billing", "bill"), ("parking", "reserve")]
    assert services.bills["b3"] == "paid"
    assert services.slots["A"] == "reserved"
    outcomes = [
        (r.service, r.event_type, r.outcome.value) for r in await store.timeline("b3")
    ]
    assert ("parking", "bill.paid", "duplicate") in outcomes
    assert ("booking", "slot.reserved", "duplicate") in outcomes
    assert outcomes.count(("parking", "slot.reserved", "published")) == 1
    assert await Tracker(store, clock=services.clock).status("b3") is S.SUCCEEDED


async def test_events_published_in_a_handler_carry_correlation_and_cause(
    services: Services, transport: InProcessTransport
) -> None:
    seen: list[Envelope] = []
    spy = EventBus("spy", transport, services.buses["booking"].store)

    @spy.on("slot.reserved")
    async def watch(event: dict[str, Any], ctx: EventContext) -> None:
        seen.append(ctx.message)

    await spy.start()
    try:
        await services.book("b4")
        paid = await services.pay("b4")
        await settle(lambda: len(seen) == 1)
    finally:
        await spy.stop()
    (reserved,) = seen
    assert reserved.correlation_id == "b4"
    assert reserved.headers == {
        "source": "parking",
        "choreography": "booking",
        "choreography_version": "1",
        "choreography_fingerprint": BOOKING.fingerprint,
        "caused_by": paid.id,
    }
    assert reserved.payload == {"booking_id": "b4", "slot": "A"}


async def test_no_progress_within_the_timeout_is_flagged_stalled(
    services: Services, store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    await services.buses["parking"].stop()  # parking is down
    await services.book("b5")
    await services.pay("b5")
    await settle(lambda: services.bills.get("b5") == "paid")
    tracker = Tracker(store, clock=services.clock)
    assert await tracker.stalled() == []

    services.clock.advance(BOOKING.timeout + 1)
    assert await tracker.status("b5") is S.STALLED  # shown before any check
    with caplog.at_level(logging.WARNING, logger="sagakit.choreography.tracker"):
        assert await tracker.stalled() == ["b5"]
        assert await tracker.stalled() == ["b5"]  # still stalled, warned once
    warnings = [r for r in caplog.records if r.getMessage() == "choreography stalled"]
    assert [getattr(r, "correlation_id", None) for r in warnings] == ["b5"]

    # parking comes back: the queued bill.paid is handled, and it moves on
    await services.buses["parking"].start()
    await settle(lambda: services.bookings["b5"] == "done")
    assert await tracker.status("b5") is S.SUCCEEDED


async def test_watch_checks_on_the_clock(store: EventStore) -> None:
    clock = FakeClock()
    bus = EventBus("solo", InProcessTransport(), store, choreographies=[BOOKING])
    bus.clock = clock
    await bus.publish("booking.created", {"x": 1}, correlation_id="w1")
    clock.advance(BOOKING.timeout + 1)
    tracker = Tracker(store, clock=clock)
    task = asyncio.create_task(tracker.watch(5.0))
    await settle(lambda: len(clock.slept) >= 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    tracked = await store.tracked("w1")
    assert tracked is not None
    assert tracked.status is S.STALLED


async def test_outgoing_events_survive_a_failed_publish(
    store: EventStore, transport: InProcessTransport
) -> None:
    """The handler ran and its inbox entry (with its events) committed, but
    publishing failed: the redelivery sends the stored events, once."""
    failures = {"events.downstream": 1}
    publish = transport.publish

    async def flaky(queue: str, message: Envelope) -> None:
        if failures.get(queue):
            failures[queue] -= 1
            raise TransportError("broker hiccup")
        await publish(queue, message)

    transport.publish = flaky  # type: ignore[method-assign]
    upstream = EventBus("upstream", transport, store)
    downstream = EventBus("downstream", transport, store)
    runs: list[str] = []
    received: list[str] = []

    @upstream.on("job.requested")
    async def work(event: dict[str, Any], ctx: EventContext) -> None:
        runs.append(event["job"])
        await ctx.publish("job.done", event)

    @downstream.on("job.done")
    async def done(event: dict[str, Any]) -> None:
        received.append(event["job"])

    await upstream.start()
    await downstream.start()
    try:
        await downstream.publish("job.requested", {"job": "j1"}, correlation_id="j1")
        await settle(lambda: received == ["j1"])
    finally:
        await upstream.stop()
        await downstream.stop()
    assert runs == ["j1"]
    assert upstream.duplicates == 1


async def test_effect_once_with_the_inbox_in_the_handler_transaction(
    tmp_path: Path, transport: InProcessTransport
) -> None:
    path = tmp_path / "shop.db"
    store = SQLiteEventStore(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE stock (item TEXT PRIMARY KEY, reserved INTEGER)")
    db.execute("INSERT INTO stock VALUES ('pen', 0)")
    bus = EventBus("stock", transport, store)
    fail_once = [True]

    @bus.on("order.placed")
    async def reserve(event: dict[str, Any], ctx: EventContext) -> None:
        with transaction(db):
            db.execute("UPDATE stock SET reserved = reserved + 1 WHERE item = 'pen'")
            await ctx.publish("stock.reserved", event)
            await ctx.mark_consumed(db)
            if fail_once:
                fail_once.clear()
                raise RuntimeError("crash before commit")

    order = bus.event("order.placed", {"order": 1}, correlation_id="o1")
    await bus.handle_failed_then_retry(order) if False else None
    with pytest.raises(RuntimeError):
        await bus.handle(order)  # rolled back: the inbox entry too
    await bus.handle(order)
    await bus.handle(order)  # a duplicate
    (reserved,) = db.execute("SELECT reserved FROM stock").fetchone()
    assert reserved == 1
    assert (bus.handled, bus.duplicates) == (1, 1)
    outcomes = [r.outcome.value for r in await store.timeline("o1")]
    assert outcomes == ["failed", "consumed", "published", "duplicate"]

    # publishing after the mark would lose the event: refused
    @bus.on("order.cancelled")
    async def late(event: dict[str, Any], ctx: EventContext) -> None:
        await ctx.mark_consumed(db)
        await ctx.publish("stock.released", event)

    with pytest.raises(SagaError, match="before mark_consumed"):
        await bus.handle(bus.event("order.cancelled", {}, correlation_id="o1"))
    db.close()
    await store.close()


async def test_invalid_payloads_and_commands_are_dead_lettered(
    transport: InProcessTransport,
) -> None:
    store = InMemoryEventStore()
    bus = EventBus("billing", transport, store)
    handled: list[Booking] = []

    @bus.on("booking.created")
    async def create(event: Booking) -> None:
        handled.append(event)

    await bus.start()
    try:
        bad = bus.event("booking.created", {"booking_id": "x"}, correlation_id="c")
        await transport.publish(bus.queue, bad)
        command = Envelope(kind="command", type="booking.created", correlation_id="c")
        await transport.publish(bus.queue, command)
        await settle(lambda: len(transport._dead[bus.queue]) == 2)
    finally:
        await bus.stop()
    reasons = [d.reason for d in await transport.dead_letters(bus.queue)]
    assert reasons == [
        "booking.created: slot: Field required",
        "billing got a command on its event queue",
    ]
    assert handled == []


def test_handlers_are_checked() -> None:
    bus = EventBus("svc")
    with pytest.raises(SagaError, match="must be async"):
        bus.on("a")(lambda event: None)
    with pytest.raises(SagaError, match="no store"):
        _ = bus.store
    with pytest.raises(SagaError, match="given twice"):
        EventBus("svc", choreographies=[BOOKING, BOOKING])


# -- the event outbox: publish_on on SQLite and PostgreSQL -------------------


async def eventually(
    what: str, check: Callable[[], bool | Awaitable[bool]], seconds: float = 10
) -> None:
    """Until ``check()`` holds: the publisher polls on real time."""
    deadline = time.monotonic() + seconds
    while True:
        done = check()
        if done if isinstance(done, bool) else await done:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Database:
    """A service's business table and sagakit's tables in one database, and
    connections to it as separate processes would have them."""

    def __init__(self, kind: str, where: str) -> None:
        self.kind, self.where = kind, where
        self.stores: list[EventStore] = []
        self.conn: Any = None

    async def open(self) -> None:
        await self.store()  # migrates
        if self.kind == "sqlite":
            self.conn = sqlite3.connect(self.where, isolation_level=None)
            self.conn.execute("CREATE TABLE booking (ref TEXT PRIMARY KEY)")
        else:
            import asyncpg  # noqa: PLC0415 - only the PostgreSQL tests need it

            self.conn = await asyncpg.connect(self.where)
            await self.conn.execute("CREATE TABLE booking (ref text PRIMARY KEY)")

    async def store(self) -> EventStore:
        """An event store on connections of its own (another process's)."""
        url = self.where if self.kind == "postgres" else f"sqlite:///{self.where}"
        self.stores.append(await open_event_store(url))
        return self.stores[-1]

    async def book(self, bus: EventBus, ref: str, *, fail: bool = False) -> Envelope:
        """Insert a booking and stage booking.created in one transaction."""
        if self.kind == "sqlite":
            with transaction(self.conn):
                self.conn.execute("INSERT INTO booking VALUES (?)", (ref,))
                event = await stage(bus, self.conn, ref)
                if fail:
                    raise RuntimeError("roll back")
            return event
        async with self.conn.transaction():
            await self.conn.execute("INSERT INTO booking VALUES ($1)", ref)
            event = await stage(bus, self.conn, ref)
            if fail:
                raise RuntimeError("roll back")
        return event

    async def bookings(self) -> list[str]:
        if self.kind == "sqlite":
            rows = self.conn.execute("SELECT ref FROM booking ORDER BY ref")
            return [r[0] for r in rows]
        return [r[0] for r in await self.conn.fetch("SELECT ref FROM booking")]

    async def close(self) -> None:
        for store in self.stores:
            await store.close()
        if self.kind == "sqlite":
            self.conn.close()
        elif self.conn is not None:
            await self.conn.close()


async def stage(bus: EventBus, conn: Any, ref: str) -> Envelope:
    booking = Booking(booking_id=ref, slot="A")
    return await bus.publish_on(conn, "booking.created", booking, correlation_id=ref)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Database]:
    where = (
        str(tmp_path / "shop.db")
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    db = Database(request.param, where)
    await db.open()
    yield db
    await db.close()


class Subscribers(Group):
    """Billing and parking consuming booking.created; what each received."""

    def __init__(self, transport: InProcessTransport, store: EventStore) -> None:
        self.received: dict[str, list[str]] = {"billing": [], "parking": []}
        self.buses = {
            name: EventBus(name, transport, store, choreographies=[BOOKING])
            for name in self.received
        }
        for name, bus in self.buses.items():
            bus.on("booking.created")(self._handler(name))

    def _handler(self, name: str) -> Callable[..., Any]:
        async def handle(event: Booking, ctx: EventContext) -> None:
            self.received[name].append(ctx.message.id)

        return handle

    def got(self, n: int) -> bool:
        return all(len(r) >= n for r in self.received.values())


@pytest.fixture
async def subscribers(
    database: Database, transport: InProcessTransport
) -> AsyncIterator[Subscribers]:
    group = Subscribers(transport, await database.store())
    await group.start()
    yield group
    await group.stop()


def booking_bus(
    transport: InProcessTransport, store: EventStore, **kw: Any
) -> EventBus:
    """The booking service: publishes only (no handlers)."""
    return EventBus("booking", transport, store, choreographies=[BOOKING], **kw)


def published(lines: list[Any]) -> list[tuple[str, str]]:
    return [
        (r.service, r.event_type) for r in lines if r.outcome is EventOutcome.PUBLISHED
    ]


async def test_an_event_staged_with_a_write_goes_out_once_after_the_commit(
    database: Database, transport: InProcessTransport, subscribers: Subscribers
) -> None:
    store = await database.store()
    booking = booking_bus(transport, store)
    await booking.start()  # a pure publisher still publishes its staged events
    try:
        event = await database.book(booking, "r1")

        async def consumed() -> bool:
            lines = await store.timeline("r1")
            return len([r for r in lines if r.outcome is EventOutcome.CONSUMED]) == 2

        await eventually("both subscribers", consumed)
    finally:
        await booking.stop()
    assert await database.bookings() == ["r1"]
    assert subscribers.received == {"billing": [event.id], "parking": [event.id]}
    lines = await store.timeline("r1")
    assert published(lines) == [("booking", "booking.created")]
    assert {r.service for r in lines[1:]} == {"billing", "parking"}
    tracked = await store.tracked("r1")
    assert tracked is not None
    assert (tracked.name, tracked.status) == ("booking", S.IN_PROGRESS)
    outbox = cast(TransactionalOutbox, store)
    assert await outbox.claim_staged("booking", "x", now=9e9, hold=1) == []


async def test_a_rolled_back_staging_sends_nothing(
    database: Database, transport: InProcessTransport, subscribers: Subscribers
) -> None:
    booking = booking_bus(transport, await database.store())
    with pytest.raises(RuntimeError, match="roll back"):
        await database.book(booking, "gone", fail=True)
    assert await booking.publish_staged() == 0
    await booking.start()
    try:
        kept = await database.book(booking, "kept")  # staged after: sent after
        await eventually("the kept booking", lambda: subscribers.got(1))
    finally:
        await booking.stop()
    assert await database.bookings() == ["kept"]
    assert subscribers.received == {"billing": [kept.id], "parking": [kept.id]}
    assert await booking.store.timeline("gone") == []


async def test_events_staged_before_a_crash_go_out_when_a_bus_starts(
    database: Database, transport: InProcessTransport, subscribers: Subscribers
) -> None:
    crashed = booking_bus(transport, await database.store())  # never started
    first = await database.book(crashed, "c1")
    second = await database.book(crashed, "c2")
    await asyncio.sleep(0.05)
    assert subscribers.received == {"billing": [], "parking": []}

    restarted = booking_bus(transport, await database.store())
    await restarted.start()
    try:
        await eventually("the staged events", lambda: subscribers.got(2))
    finally:
        await restarted.stop()
    for ids in subscribers.received.values():
        assert sorted(ids) == sorted([first.id, second.id])
    timeline = await restarted.store.timeline("c1")
    assert published(timeline) == [("booking", "booking.created")]


async def test_two_buses_of_a_service_send_each_staged_event_once(
    database: Database, transport: InProcessTransport, subscribers: Subscribers
) -> None:
    buses = [
        booking_bus(transport, await database.store(), outbox_batch=3) for _ in range(2)
    ]
    refs = [f"t{n:02}" for n in range(24)]
    for ref in refs[:12]:  # staged before they start: they compete for these
        await database.book(buses[0], ref)
    for bus in buses:
        await bus.start()
    try:
        for n, ref in enumerate(refs[12:]):
            await database.book(buses[n % 2], ref)
        await eventually("every booking", lambda: subscribers.got(len(refs)))
        await asyncio.sleep(0.3)  # a second copy would arrive by now
    finally:
        for bus in buses:
            await bus.stop()
    for name, bus in subscribers.buses.items():
        assert len(subscribers.received[name]) == len(refs)
        assert (bus.handled, bus.duplicates) == (len(refs), 0)
    shares = [bus.outbox_published for bus in buses]
    assert sum(shares) == len(refs)
    assert all(shares), shares  # both took part
    store = buses[0].store
    for ref in refs:
        assert published(await store.timeline(ref)) == [("booking", "booking.created")]


async def test_a_dead_claimers_events_come_back_after_its_hold(
    database: Database, transport: InProcessTransport, subscribers: Subscribers
) -> None:
    """It sent an event, then died before deleting it: a live bus sends it
    again once the hold expires, and the subscribers drop the repeat."""
    clock = FakeClock()
    store = await database.store()
    live = booking_bus(transport, store, clock=clock)
    event = await database.book(live, "d1")
    outbox = cast(TransactionalOutbox, store)
    (held,) = await outbox.claim_staged("booking", "dead", now=clock.now(), hold=30)
    for queue in await store.subscribers("booking.created"):
        await transport.publish(queue, decode(held.body))
    await eventually("the dead claimer's copy", lambda: subscribers.got(1))

    assert await live.publish_staged() == 0  # held by the dead claimer
    clock.advance(31)
    assert await live.publish_staged() == 1
    assert await live.publish_staged() == 0  # deleted
    parking, billing = subscribers.buses["parking"], subscribers.buses["billing"]
    await eventually(
        "the repeat dropped", lambda: parking.duplicates == billing.duplicates == 1
    )
    assert subscribers.received == {"billing": [event.id], "parking": [event.id]}


async def test_a_broker_error_is_retried_and_loses_nothing(
    tmp_path: Path, transport: InProcessTransport, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteEventStore(tmp_path / "flaky.db")
    db = sqlite3.connect(tmp_path / "flaky.db", isolation_level=None)
    billing = EventBus("billing", transport, store)
    got: list[str] = []

    @billing.on("booking.created")
    async def bill(event: Booking) -> None:
        got.append(event.booking_id)

    failures = [TransportError("broker down")] * 2
    publish = transport.publish

    async def flaky(queue: str, message: Envelope) -> None:
        if failures:
            raise failures.pop()
        await publish(queue, message)

    transport.publish = flaky  # type: ignore[method-assign]
    booking = EventBus("booking", transport, store, outbox_interval=0.01)
    await billing.start()
    await booking.start()
    try:
        with caplog.at_level(logging.WARNING, logger="sagakit.choreography.outbox"):
            with transaction(db):
                await stage(booking, db, "f1")
            await eventually("the retried event", lambda: got == ["f1"])
    finally:
        await booking.stop()
        await billing.stop()
        db.close()
        await store.close()
    retries = [r for r in caplog.records if r.getMessage().startswith("staged")]
    assert [getattr(r, "error", None) for r in retries] == ["broker down"] * 2
    lines = await SQLiteEventStore(tmp_path / "flaky.db").timeline("f1")
    assert published(lines) == [("booking", "booking.created")]  # one line


async def test_publish_on_needs_the_right_connection_and_an_outbox(
    tmp_path: Path, transport: InProcessTransport
) -> None:
    sqlite_store = SQLiteEventStore(tmp_path / "x.db")
    bus = EventBus("svc", transport, sqlite_store)
    with pytest.raises(StoreError, match=r"needs a sqlite3\.Connection, not object"):
        await bus.publish_on(object(), "a.b", correlation_id="c")
    await sqlite_store.close()

    memory = EventBus("svc", transport, InMemoryEventStore())
    with pytest.raises(StoreError, match="pass conn=None"):
        await memory.publish_on(sqlite3.connect(":memory:"), "a.b", correlation_id="c")
    staged = await memory.publish_on(None, "a.b", {"n": 1}, correlation_id="c")
    assert await memory.publish_staged() == 1
    assert [r.message_id for r in await memory.store.timeline("c")] == [staged.id]

    class RoutesOnly:  # an event store of someone else's making
        async def record_event(self, *args: Any) -> None:
            return None

    plain = EventBus("svc", transport, cast(EventStore, RoutesOnly()))
    with pytest.raises(SagaError, match="RoutesOnly has no event outbox"):
        await plain.publish_on(None, "a.b", correlation_id="c")
    with pytest.raises(SagaError, match="no event outbox"):
        await plain.publish_staged()
    with pytest.raises(SagaError, match="outbox hold must be > 0"):
        EventBus("svc", outbox_hold=0)
