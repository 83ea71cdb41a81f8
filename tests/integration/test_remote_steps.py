"""Remote steps end to end in one process: orchestrator, outbox, relay,
participants and the in-process transport, on a real SQLite store."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import BaseModel

from sagakit import (
    Orchestrator,
    Parallel,
    RetryPolicy,
    Saga,
    SagaError,
    SagaStatus,
    SQLiteStore,
    Step,
    StoreError,
    TransportError,
)
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.definition import Remote
from sagakit.messaging import Envelope
from sagakit.participant import CommandRejected, Participant
from sagakit.runtime import Worker


class Order(BaseModel):
    order_id: int = 1
    amount: int = 50
    ticket_id: int | None = None


class CreateTicket(BaseModel):
    order_id: int


class TicketCreated(BaseModel):
    ticket_id: int


class Charge(BaseModel):
    order_id: int
    amount: int


def ticket_payload(ctx: Order) -> CreateTicket:
    return CreateTicket(order_id=ctx.order_id)


def cancel_payload(ctx: Order, result: dict[str, int]) -> dict[str, int]:
    return {"ticket_id": result["ticket_id"]}


def charge_payload(ctx: Order) -> Charge:
    return Charge(order_id=ctx.order_id, amount=ctx.amount)


def order_saga(charge_timeout: float = 5.0) -> Saga[Order]:
    return Saga(
        "create_order",
        [
            Step(
                "ticket",
                Remote("kitchen.create_ticket", ticket_payload, reply=TicketCreated),
                compensate=Remote("kitchen.cancel_ticket", cancel_payload),
                timeout=5,
            ),
            Step(
                "charge",
                Remote("accounting.charge", charge_payload),
                timeout=charge_timeout,
            ),
        ],
        context=Order,
    )


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.transport = InProcessTransport()
        self.store = SQLiteStore(tmp_path / "orders.db")
        self.kitchen_store = SQLiteStore(tmp_path / "kitchen.db")
        self.accounting_store = SQLiteStore(tmp_path / "accounting.db")
        self.kitchen = Participant("kitchen", self.transport, self.kitchen_store)
        self.accounting = Participant(
            "accounting", self.transport, self.accounting_store
        )
        self.tickets: list[int] = []
        self.cancelled: list[int] = []
        self.charges: list[int] = []
        self.decline = False
        self.hang_accounting = False

        @self.kitchen.handler("kitchen.create_ticket")
        async def create_ticket(cmd: CreateTicket) -> TicketCreated:
            self.tickets.append(cmd.order_id)
            return TicketCreated(ticket_id=100 + cmd.order_id)

        @self.kitchen.handler("kitchen.cancel_ticket")
        def cancel_ticket(cmd: dict[str, int]) -> None:
            self.cancelled.append(cmd["ticket_id"])

        @self.accounting.handler("accounting.charge")
        async def charge(cmd: Charge) -> dict[str, str]:
            if self.hang_accounting:
                await asyncio.sleep(3600)
            if self.decline:
                raise CommandRejected("card declined")
            self.charges.append(cmd.amount)
            return {"charge": "ok"}

    def orchestrator(self, **kwargs: object) -> Orchestrator:
        return Orchestrator(
            self.store,
            transport=self.transport,
            deadline_interval=0.02,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path)
    await w.kitchen.start()
    await w.accounting.start()
    yield w
    await w.transport.close()


async def test_success_over_messages(world: World) -> None:
    orch = world.orchestrator()
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(order_saga(), Order(order_id=7)), 10)
    assert result.status is SagaStatus.SUCCEEDED, result.error
    assert result.results == {"ticket": {"ticket_id": 107}, "charge": {"charge": "ok"}}
    assert world.tickets == [7]
    assert world.charges == [50]
    history = await world.store.history(result.saga_id)
    assert [(h.step, h.outcome) for h in history if h.kind == "action"] == [
        ("ticket", "succeeded"),
        ("charge", "succeeded"),
    ]
    # the outbox is empty once everything is published
    assert await world.store.claim_outbox("probe", lease=1) == []


async def test_rejected_command_compensates_remotely(world: World) -> None:
    world.decline = True
    orch = world.orchestrator()
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(order_saga(), Order(order_id=8)), 10)
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "charge"
    assert result.error is not None
    assert result.error.type == "CommandRejected"
    assert result.error.message == "card declined"
    assert world.cancelled == [108]


async def test_reply_that_never_comes_times_out_and_compensates(world: World) -> None:
    world.hang_accounting = True
    orch = world.orchestrator()
    async with orch.serving():
        result = await asyncio.wait_for(
            orch.run(order_saga(charge_timeout=0.2), Order(order_id=9)), 10
        )
    assert result.status is SagaStatus.COMPENSATED
    assert result.error is not None
    assert result.error.type == "ReplyTimeout"
    assert world.cancelled == [109]
    outcomes = [h.outcome for h in await world.store.history(result.saga_id)]
    assert "timed_out" in outcomes


async def test_duplicate_command_runs_the_handler_once(world: World) -> None:
    command = Envelope(
        id="fixed-1",
        kind="command",
        type="kitchen.create_ticket",
        correlation_id="x:ticket:1",
        saga_id="x",
        step="ticket",
        reply_to="probe.replies",
        payload={"order_id": 3},
    )
    replies: list[Envelope] = []
    got = asyncio.Event()

    async def collect(message: Envelope) -> None:
        replies.append(message)
        if len(replies) == 2:
            got.set()

    await world.transport.consume("probe.replies", collect)
    await world.transport.publish("kitchen", command)
    await world.transport.publish("kitchen", command)
    await asyncio.wait_for(got.wait(), 5)
    assert world.tickets == [3]
    assert replies[0] == replies[1]
    assert replies[0].payload == {"ticket_id": 103}
    assert world.kitchen.duplicates == 1


async def test_duplicate_and_late_replies_change_nothing(world: World) -> None:
    orch = world.orchestrator()
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(order_saga(), Order(order_id=4)), 10)
        version = (await world.store.get(result.saga_id)).version
        # replay the ticket reply: the saga has ended, so it is dropped
        stored = await world.kitchen_store.inbox_reply(
            "kitchen", f"{result.saga_id}.ticket.a1"
        )
        assert stored
        await world.transport.publish_raw("sagakit.replies", stored)
        await asyncio.sleep(0.1)
    assert (await world.store.get(result.saga_id)).version == version
    assert await world.transport.dead_letters("sagakit.replies") == []


async def test_reply_for_unknown_saga_is_dead_lettered(world: World) -> None:
    orch = world.orchestrator()
    bogus = Envelope(
        kind="reply",
        type="kitchen.create_ticket",
        correlation_id="nope:ticket:1",
        saga_id="nope",
        step="ticket",
        ok=True,
    )
    async with orch.serving():
        await world.transport.publish("sagakit.replies", bogus)
        await world.transport.publish_raw("sagakit.replies", b"garbage")
        for _ in range(100):
            dead = await world.transport.dead_letters("sagakit.replies")
            if len(dead) == 2:
                break
            await asyncio.sleep(0.02)
    reasons = sorted(d.reason for d in dead)
    assert any("not JSON" in r for r in reasons)
    assert any("unknown saga nope" in r for r in reasons)


async def test_unknown_command_fails_fast_instead_of_timing_out(world: World) -> None:
    saga = Saga("odd", [Step("x", Remote("kitchen.fly_to_moon"), timeout=60)])
    orch = world.orchestrator()
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(saga), 10)
    assert result.status is SagaStatus.COMPENSATED
    assert result.error is not None
    assert result.error.type == "UnknownCommand"


async def test_mixed_local_and_remote_parallel_steps(world: World) -> None:
    ran: list[str] = []

    async def local(ctx: Order) -> str:
        ran.append("local")
        return "here"

    saga = Saga(
        "mixed",
        [
            Parallel(
                Step("local", local),
                Step("ticket", Remote("kitchen.create_ticket", ticket_payload)),
            )
        ],
        context=Order,
    )
    orch = world.orchestrator()
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(saga, Order(order_id=5)), 10)
    assert result.status is SagaStatus.SUCCEEDED
    assert result.results == {"local": "here", "ticket": {"ticket_id": 105}}


async def test_remote_saga_needs_serving(world: World) -> None:
    orch = world.orchestrator()
    with pytest.raises(Exception, match="serving"):
        await orch.run(order_saga())


async def test_bad_payload_builder_fails_the_step(world: World) -> None:
    def broken(ctx: Order) -> dict[str, int]:
        raise KeyError("missing")

    saga = Saga(
        "broken",
        [
            Step(
                "ticket",
                Remote("kitchen.create_ticket", ticket_payload),
                compensate=Remote("kitchen.cancel_ticket", cancel_payload),
            ),
            Step("charge", Remote("accounting.charge", broken)),
        ],
        context=Order,
    )
    orch = world.orchestrator()
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(saga, Order(order_id=6)), 10)
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "charge"
    assert world.cancelled == [106]


async def test_retry_policy_applies_to_retryable_remote_failures(world: World) -> None:
    calls: list[int] = []

    @world.accounting.handler("accounting.flaky")
    async def flaky(cmd: dict[str, int]) -> None:
        calls.append(1)
        if len(calls) < 2:
            raise ConnectionError("try later")

    saga = Saga(
        "flaky",
        [
            Step(
                "f",
                Remote("accounting.flaky"),
                retry=RetryPolicy(attempts=3, backoff=0.01),
            )
        ],
    )
    orch = world.orchestrator()
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(saga), 10)
    assert result.status is SagaStatus.SUCCEEDED
    assert len(calls) == 2


async def test_stopping_a_worker_hands_over_sagas_waiting_for_replies(
    world: World,
) -> None:
    world.hang_accounting = True
    saga = order_saga()
    worker = Worker(world.store, [saga], transport=world.transport, lease=30.0)
    saga_id = await worker.orchestrator.submit(saga, Order(order_id=11))
    running = asyncio.create_task(worker.run())
    for _ in range(200):
        state = (await world.store.get(saga_id)).state
        if state.step("charge").status.value == "running":
            break
        await asyncio.sleep(0.01)
    worker.stop()
    await asyncio.wait_for(running, 5)  # not the 30 s drain timeout
    # released: another worker can claim it at once
    claimed = await world.store.claim("other", ["create_order"], lease=30.0)
    assert [r.saga_id for r in claimed] == [saga_id]


def _reply(saga_id: str, step: str, command: str, payload: dict[str, int]) -> Envelope:
    sent = Envelope(
        id=f"{saga_id}.{step}.a1",
        kind="command",
        type=command,
        correlation_id=f"{saga_id}:{step}:1",
        saga_id=saga_id,
        step=step,
        attempt=1,
        reply_to="sagakit.replies",
        payload={},
    )
    reply = sent.reply(ok=True, payload=payload)
    return reply.model_copy(update={"id": f"{sent.id}.reply"})


Workers = tuple[SQLiteStore, Saga[Order], Orchestrator, Orchestrator]


@pytest.fixture
async def two_workers(tmp_path: Path) -> AsyncIterator[Workers]:
    """Two orchestrators with leases serving on one store and one in-process
    transport with no participants (the tests reply)."""
    store = SQLiteStore(tmp_path / "orders.db")
    transport = InProcessTransport()
    saga = order_saga(charge_timeout=60)
    first = Orchestrator(store, [saga], transport=transport, lease=30.0)
    second = Orchestrator(store, [saga], transport=transport, lease=30.0)
    async with first.serving(), second.serving():
        yield store, saga, first, second
    await transport.close()


async def test_a_stale_worker_reloads_to_place_a_reply(two_workers: Workers) -> None:
    """Regression (chaos tests): replies reach any worker, and one that applies
    a reply takes the saga over. The former owner, still driving its old copy,
    took the next reply for a step it had not seen start as a late reply and
    dropped it (acknowledged, lost): the saga waited for its reply timeout and
    was compensated instead of succeeding. Then it sent such replies back to
    the queue and dropped its copy (with two workers, a third of the replies
    went round again). Now it reloads the saga and applies the reply."""
    store, saga, first, second = two_workers
    saga_id = await first.start(saga, Order(order_id=5))
    # the ticket reply reaches the second worker: it takes the saga over
    await second.handle_reply(
        _reply(saga_id, "ticket", "kitchen.create_ticket", {"ticket_id": 105})
    )
    assert (await store.get(saga_id)).state.step("charge").status.value == ("running")
    charged = _reply(saga_id, "charge", "accounting.charge", {})
    # the first worker's copy still waits for the ticket: it reloads the
    # saga and applies the charge reply, which ends it
    await first.handle_reply(charged)
    assert (await store.get(saga_id)).status is SagaStatus.SUCCEEDED
    assert first.active == 0
    # the same reply delivered again, to the worker with the old copy now
    await second.handle_reply(charged)
    assert second.active == 0
    record = await store.get(saga_id)
    assert record.status is SagaStatus.SUCCEEDED
    history = await store.history(saga_id)
    assert [(h.step, h.outcome) for h in history if h.kind == "action"] == [
        ("ticket", "succeeded"),
        ("charge", "succeeded"),
    ]


async def test_a_run_whose_saga_another_worker_ended_returns_its_result(
    two_workers: Workers,
) -> None:
    """Replies through the shared queue reach any worker: when another one
    applies the last reply, this process's copy only waits for a reply that
    will not come. Its next lease renewal finds the saga ended and ``run()``
    returns the stored result (it used to wait for the reply deadline)."""
    store, saga, first, second = two_workers
    running = asyncio.create_task(first.run(saga, Order(order_id=6)))
    while first.active == 0:  # noqa: ASYNC110 - the saga starts in the task
        await asyncio.sleep(0.01)
    (saga_id,) = first.driver.active
    for step, command, payload in (
        ("ticket", "kitchen.create_ticket", {"ticket_id": 106}),
        ("charge", "accounting.charge", {}),
    ):
        await second.handle_reply(_reply(saga_id, step, command, payload))
    assert (await store.get(saga_id)).status is SagaStatus.SUCCEEDED
    assert not running.done()
    assert await first.renew_leases() == []  # ended, not lost
    async with asyncio.timeout(10):
        result = await running
    assert result.status is SagaStatus.SUCCEEDED
    assert result.results["ticket"] == {"ticket_id": 106}
    assert first.active == 0


class _NoWait:
    def now(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class _FlakyInbox(SQLiteStore):
    """An inbox whose database is away for the first ``outage`` calls."""

    def __init__(self, path: Path, outage: int) -> None:
        super().__init__(path)
        self.outage = outage

    def _away(self) -> None:
        if self.outage > 0:
            self.outage -= 1
            raise StoreError("inbox lookup failed: connection refused")

    async def inbox_reply(self, consumer: str, message_id: str) -> bytes | None:
        self._away()
        return await super().inbox_reply(consumer, message_id)

    async def record_inbox(self, consumer: str, message_id: str, reply: bytes) -> bool:
        self._away()
        return await super().record_inbox(consumer, message_id, reply)


async def test_an_inbox_outage_does_not_dead_letter_commands(tmp_path: Path) -> None:
    """Regression (chaos tests): during a database restart, each command's
    inbox lookup failed, the transport counted a failed delivery, and after
    five quick failures dead-lettered valid commands (their sagas timed out).
    The participant now retries its inbox in place."""
    transport = InProcessTransport()
    inbox = _FlakyInbox(tmp_path / "kitchen.db", outage=12)
    kitchen = Participant("kitchen", transport, inbox)
    kitchen.clock = _NoWait()
    tickets: list[int] = []

    @kitchen.handler("kitchen.create_ticket")
    async def create_ticket(cmd: CreateTicket) -> TicketCreated:
        tickets.append(cmd.order_id)
        return TicketCreated(ticket_id=cmd.order_id)

    replies: list[Envelope] = []

    async def collect(message: Envelope) -> None:
        replies.append(message)

    await transport.consume("probe.replies", collect)
    await kitchen.start()
    command = Envelope(
        id="s1.ticket.a1",
        kind="command",
        type="kitchen.create_ticket",
        correlation_id="s1:ticket:1",
        saga_id="s1",
        step="ticket",
        reply_to="probe.replies",
        payload={"order_id": 3},
    )
    await transport.publish("kitchen", command)
    for _ in range(200):
        if replies:
            break
        await asyncio.sleep(0.01)
    assert [r.ok for r in replies] == [True]
    assert tickets == [3]
    assert await transport.dead_letters("kitchen") == []
    await transport.close()


def _outbox_rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM sagakit_outbox").fetchone()
    return int(count)


async def test_serving_publishes_each_command_after_its_commit_without_a_claim(
    world: World,
) -> None:
    orch = world.orchestrator()
    assert orch.relay is not None
    saga = order_saga()
    async with orch.serving():
        runs = [orch.run(saga, Order(order_id=i)) for i in range(5)]
        results = await asyncio.wait_for(asyncio.gather(*runs), 10)
        assert {r.status for r in results} == {SagaStatus.SUCCEEDED}
    # ten commands, each handed to the relay by the commit that wrote it
    assert orch.relay.claimed == 0
    assert orch.relay.published == 10
    assert _outbox_rows(world.store.path) == 0  # all forgotten once confirmed
    assert sorted(world.tickets) == [0, 1, 2, 3, 4]


class _BrokerAway(InProcessTransport):
    """Publishing fails while ``away`` (the broker is unreachable)."""

    def __init__(self) -> None:
        super().__init__()
        self.away = True
        self.refused = 0
        self.refused_twice = asyncio.Event()

    async def publish_raw(self, queue: str, body: bytes) -> None:
        if self.away:
            self.refused += 1
            if self.refused >= 2:
                self.refused_twice.set()
            raise TransportError("connection refused")
        await super().publish_raw(queue, body)


async def test_a_command_whose_publish_failed_goes_out_after_its_hold(
    tmp_path: Path,
) -> None:
    transport = _BrokerAway()
    kitchen = Participant("kitchen", transport, SQLiteStore(tmp_path / "k.db"))
    tickets: list[int] = []

    @kitchen.handler("kitchen.create_ticket")
    async def create_ticket(cmd: CreateTicket) -> TicketCreated:
        tickets.append(cmd.order_id)
        return TicketCreated(ticket_id=cmd.order_id)

    saga = Saga(
        "ticket_only",
        [Step("ticket", Remote("kitchen.create_ticket", ticket_payload), timeout=30)],
        context=Order,
    )
    await kitchen.start()
    store = SQLiteStore(tmp_path / "orders.db")
    orch = Orchestrator(store, transport=transport, deadline_interval=0.05)
    assert orch.relay is not None
    orch.relay.hold = 0.3
    async with orch.serving():
        saga_id = await orch.start(saga, Order(order_id=4))
        await asyncio.wait_for(transport.refused_twice.wait(), 10)
        assert tickets == []
        assert _outbox_rows(store.path) == 1  # kept, held, retried
        transport.away = False
        result = await asyncio.wait_for(orch.wait(saga_id), 10)
    assert result.status is SagaStatus.SUCCEEDED
    assert tickets == [4]
    assert orch.relay.claimed >= 2
    assert _outbox_rows(store.path) == 0
    await transport.close()


class _SlowBroker(InProcessTransport):
    """Each publish takes ``delay`` seconds (a slow confirm)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def publish_raw(self, queue: str, body: bytes) -> None:
        await asyncio.sleep(self.delay)
        await super().publish_raw(queue, body)


async def test_stopping_lets_a_publish_under_way_finish(tmp_path: Path) -> None:
    transport = _SlowBroker(0.3)
    received: list[Envelope] = []

    async def kitchen(message: Envelope) -> None:
        received.append(message)

    await transport.consume("kitchen", kitchen)
    store = SQLiteStore(tmp_path / "orders.db")
    orch = Orchestrator(store, transport=transport)
    async with orch.serving():
        await orch.start(order_saga(), Order(order_id=9))
    # serving() ended while the command was being published: it went out,
    # and it is forgotten, instead of waiting out its hold in the outbox
    assert [m.type for m in received] == ["kitchen.create_ticket"]
    assert _outbox_rows(store.path) == 0
    await orch.close()
    await transport.close()


class _Frozen(InProcessTransport):
    """Publishing never returns: the process froze, then died."""

    async def publish_raw(self, queue: str, body: bytes) -> None:
        await asyncio.Event().wait()


class _DiesBeforeReleasing(SQLiteStore):
    """The dead process never got to release its own holds when stopping."""

    async def release_outbox(self, owner: str | None = None) -> int:
        if owner is None:  # starting up: the holds of earlier runs
            return await super().release_outbox()
        raise StoreError("the process is gone")


async def test_a_restart_publishes_what_a_crash_left_held(world: World) -> None:
    """Embedded mode: a command committed (written held by the relay) by a
    process that died before publishing it goes out as soon as the restarted
    process serves, not after the 30 s hold."""
    dead = Orchestrator(_DiesBeforeReleasing(world.store.path), transport=_Frozen())
    assert dead.relay is not None
    dead.relay.drain_timeout = 0
    saga = order_saga()
    async with dead.serving():
        saga_id = await dead.start(saga, Order(order_id=5))
    assert _outbox_rows(world.store.path) == 1  # committed, held, not sent
    assert await world.store.claim_outbox("probe", lease=0) == []  # still held

    restarted = world.orchestrator()
    restarted.register(saga)
    async with restarted.serving():
        assert await restarted.recover() == [saga_id]
        result = await asyncio.wait_for(restarted.wait(saga_id), 5)
    assert result.status is SagaStatus.SUCCEEDED
    assert world.tickets == [5]


async def test_run_follows_its_saga_when_another_worker_takes_the_lease(
    tmp_path: Path,
) -> None:
    """``run()`` drives the saga in the caller's task. When another worker
    took the saga's lease, renewing used to cancel that task: the caller got
    CancelledError for a saga that went on fine elsewhere. Now ``run()``
    follows the saga in the store and returns its result."""
    store = SQLiteStore(tmp_path / "orders.db")
    transport = InProcessTransport()  # no participants: the test replies
    saga = order_saga(charge_timeout=60)
    first = Orchestrator(store, [saga], transport=transport, lease=30.0)
    second = Orchestrator(store, [saga], transport=transport, lease=30.0)
    async with first.serving(), second.serving():
        running = asyncio.create_task(first.run(saga, Order(order_id=6), saga_id="s6"))
        async with asyncio.timeout(5):
            while first.active == 0:  # noqa: ASYNC110 - committed, then driven
                await asyncio.sleep(0.01)
        ticket = _reply("s6", "ticket", "kitchen.create_ticket", {"ticket_id": 106})
        await second.handle_reply(ticket)  # the second worker takes the lease
        assert await first.renew_leases() == ["s6"]
        await asyncio.sleep(0.05)
        assert not running.done()  # not cancelled: it follows the saga
        await second.handle_reply(_reply("s6", "charge", "accounting.charge", {}))
        result = await asyncio.wait_for(running, 5)
    assert result.status is SagaStatus.SUCCEEDED
    assert result.saga_id == "s6"
    await transport.close()


async def lossy_accounting(
    world: World, lose: Callable[[Envelope, int], Envelope | None]
) -> list[Envelope]:
    """Put a consumer of the accounting queue in front of its participant:
    each copy of a command goes on as ``lose(copy, n)`` says (None: lost on
    the way). The copies it saw are returned (filled as they come)."""
    await world.accounting.stop()
    copies: list[Envelope] = []

    async def forward(message: Envelope) -> None:
        copies.append(message)
        passed = lose(message, len(copies))
        if passed is not None:
            await world.accounting.handle(passed)

    await world.transport.consume("accounting", forward)
    return copies


async def run_resending(world: World, order_id: int) -> None:
    """Run an order (whose charge would wait a minute for a lost reply) on
    an orchestrator that sends late commands again; it must succeed."""
    orch = world.orchestrator(resend_after=0.1)
    async with orch.serving():
        result = await asyncio.wait_for(
            orch.run(order_saga(charge_timeout=60), Order(order_id=order_id)), 10
        )
    assert result.status is SagaStatus.SUCCEEDED, result.error


async def test_a_lost_command_is_sent_again_with_its_id(world: World) -> None:
    copies = await lossy_accounting(world, lambda m, n: None if n == 1 else m)
    await run_resending(world, 11)
    assert len(copies) >= 2
    assert {m.id for m in copies} == {copies[0].id}  # the participant dedupes
    assert world.charges == [50]


async def test_a_lost_reply_comes_again_from_the_participants_inbox(
    world: World,
) -> None:
    def reply_lost_once(message: Envelope, n: int) -> Envelope:
        if n > 1:
            return message
        return message.model_copy(update={"reply_to": "nowhere"})

    copies = await lossy_accounting(world, reply_lost_once)
    await run_resending(world, 12)
    assert len(copies) >= 2
    assert world.charges == [50]  # the handler ran once: the stored reply came
    assert world.accounting.duplicates >= 1


async def test_resend_after_must_be_a_positive_number_of_seconds(
    world: World,
) -> None:
    for bad in (0, -1, math.inf):
        with pytest.raises(SagaError, match="resend_after"):
            world.orchestrator(resend_after=bad)
