"""Commands sent without a reply wait, in one process: fire-and-forget
compensations (``Remote(..., awaited=False)``) and an action's
``on_timeout`` command, over the in-process transport on a real SQLite
store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import (
    Orchestrator,
    RetryPolicy,
    Saga,
    SagaResult,
    SagaStatus,
    SQLiteStore,
    Step,
)
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.definition import Remote
from sagakit.engine import (
    Compensate,
    SagaStarted,
    StepAttemptFailed,
    StepSucceeded,
    decide,
    initial_state,
)
from sagakit.engine.state import ErrorInfo
from sagakit.messaging import Envelope
from sagakit.participant import CommandRejected, Participant
from sagakit.ports.store import SagaRecord


class Order(BaseModel):
    order_id: int = 1


def ticket_payload(ctx: Order) -> dict[str, int]:
    return {"order_id": ctx.order_id}


def cancel_payload(ctx: Order) -> dict[str, int]:
    return {"order_id": ctx.order_id}


class World:
    """A kitchen that creates tickets and never answers an undo, and an
    accounting service that declines every charge."""

    def __init__(self, tmp_path: Path) -> None:
        self.transport = InProcessTransport()
        self.store = SQLiteStore(tmp_path / "orders.db")
        self.kitchen_store = SQLiteStore(tmp_path / "kitchen.db")
        self.kitchen = Participant(
            "kitchen", self.transport, self.kitchen_store, prefetch=4
        )
        self.accounting = Participant(
            "accounting", self.transport, self.kitchen_store, prefetch=4
        )
        self.undone: list[tuple[str, int]] = []
        self.undo_received = asyncio.Event()
        self.cancels: list[Envelope] = []
        self.cancelled = asyncio.Event()
        self.ticket_delay = 0.0
        self.tickets = 0

        @self.kitchen.handler("kitchen.create_ticket")
        async def create_ticket(cmd: dict[str, int]) -> dict[str, int]:
            self.tickets += 1
            if self.ticket_delay:
                await asyncio.sleep(self.ticket_delay)
            return {"ticket_id": 100 + cmd["order_id"]}

        @self.kitchen.handler("kitchen.reject_ticket")
        async def reject_ticket(cmd: dict[str, int], message: Envelope) -> None:
            self.undone.append((message.step or "", message.attempt))
            self.undo_received.set()
            await asyncio.Event().wait()  # never answers

        @self.kitchen.handler("kitchen.cancel_ticket")
        def cancel_ticket(cmd: dict[str, int], message: Envelope) -> None:
            self.cancels.append(message)
            self.cancelled.set()

        @self.accounting.handler("accounting.charge")
        def charge(cmd: dict[str, int]) -> None:
            raise CommandRejected("card declined")

    async def run(self, saga: Saga[Order], order_id: int) -> SagaResult[Order]:
        """Run ``saga`` to its end with an orchestrator serving the transport."""
        orch = self.orchestrator()
        async with orch.serving():
            return await asyncio.wait_for(orch.run(saga, Order(order_id=order_id)), 10)

    def orchestrator(self) -> Orchestrator:
        return Orchestrator(
            self.store, transport=self.transport, deadline_interval=0.02
        )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path)
    await w.kitchen.start()
    await w.accounting.start()
    yield w
    await w.kitchen.stop()
    await w.accounting.stop()
    await w.transport.close()


def ticket_then_charge(name: str, undo: Remote, *, reserve: Any = None) -> Saga[Order]:
    """Create a ticket (undone by ``undo``), then a charge that is declined;
    with ``reserve``, a local step first, undone by that function."""
    first = [] if reserve is None else [Step("reserve", noop, compensate=reserve)]
    return Saga(
        name,
        [
            *first,
            Step(
                "ticket",
                Remote("kitchen.create_ticket", ticket_payload),
                compensate=undo,
                timeout=5,
            ),
            Step("charge", Remote("accounting.charge"), timeout=5),
        ],
        context=Order,
    )


def noop(ctx: Order) -> None:
    return None


def undo_saga() -> Saga[Order]:
    undo = Remote("kitchen.reject_ticket", cancel_payload, awaited=False)
    return ticket_then_charge("order_undo", undo, reserve=noop)


async def test_a_participant_that_never_answers_an_undo_does_not_block_the_rollback(
    world: World,
) -> None:
    orch = world.orchestrator()
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(undo_saga(), Order(order_id=3)), 10)
        await asyncio.wait_for(world.undo_received.wait(), 10)
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "charge"
    assert world.undone == [("ticket", 1)]
    history = await world.store.history(result.saga_id)
    lines = [(h.step, h.kind, h.outcome) for h in history if h.kind != "action"]
    assert lines[1:] == [
        ("ticket", "compensation", "sent"),
        ("reserve", "compensation", "succeeded"),
        (None, "saga", "compensated"),
    ]
    sent = next(h for h in history if h.outcome == "sent")
    assert sent.result == {"command": "kitchen.reject_ticket", "queue": "kitchen"}
    # created, reserve, ticket, charge failed + ticket undo sent + reserve
    # undo started (one commit), reserve undone: 5 commits
    assert (await world.store.get(result.saga_id)).version == 5


async def test_a_fire_and_forget_command_names_no_reply_queue(world: World) -> None:
    seen: list[Envelope] = []
    got = asyncio.Event()

    async def spy(message: Envelope) -> None:
        seen.append(message)
        got.set()

    saga = ticket_then_charge("order_spy", Remote("spy.undo", awaited=False))
    await world.transport.consume("spy", spy)
    orch = world.orchestrator()
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(saga, Order(order_id=4)), 10)
        await asyncio.wait_for(got.wait(), 10)
    assert result.status is SagaStatus.COMPENSATED
    [command] = seen
    assert command.reply_to is None
    assert command.compensation
    assert command.id == f"{result.saga_id}.ticket.c1"


async def test_a_reply_to_a_fire_and_forget_command_is_ignored(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    undoing = asyncio.Event()

    async def unreserve(ctx: Order) -> None:
        undoing.set()
        await release.wait()

    undo = Remote("kitchen.reject_ticket", awaited=False)
    saga = ticket_then_charge("order_late_undo_reply", undo, reserve=unreserve)
    caplog.set_level("INFO", logger="sagakit.runtime.orchestrator")
    orch = world.orchestrator()
    async with orch.serving():
        saga_id = await orch.start(saga, Order(order_id=5))
        await asyncio.wait_for(undoing.wait(), 10)  # ticket's undo was sent
        late = Envelope(
            kind="reply",
            type="kitchen.reject_ticket",
            correlation_id=f"{saga_id}:ticket:1",
            saga_id=saga_id,
            step="ticket",
            compensation=True,
            ok=False,
            error={"type": "Oops", "message": "too late"},
        )
        await world.transport.publish("sagakit.replies", late)
        while not any(  # noqa: ASYNC110 - the consumer logs when it is done
            getattr(r, "action", None) == "reply_ignored" for r in caplog.records
        ):
            await asyncio.sleep(0.01)
        release.set()
        result = await asyncio.wait_for(orch.wait(saga_id), 10)
    assert result.status is SagaStatus.COMPENSATED
    assert result.compensation_errors == ()
    history = await world.store.history(saga_id)
    assert [h.outcome for h in history if h.kind == "compensation"] == [
        "sent",
        "succeeded",
    ]
    assert await world.transport.dead_letters("sagakit.replies") == []


async def test_a_compensation_whose_command_cannot_be_built_fails(
    world: World,
) -> None:
    def broken(ctx: Order) -> dict[str, int]:
        raise ValueError("no ticket to reject")

    undo = Remote("kitchen.reject_ticket", broken, awaited=False)
    saga = ticket_then_charge("order_broken_undo", undo)
    result = await world.run(saga, 7)
    assert result.status is SagaStatus.COMPENSATION_FAILED
    assert result.compensation_error is not None
    assert result.compensation_error.message == "no ticket to reject"
    assert world.undone == []


def timeout_saga(
    attempts: int = 1, *, name: str = "order_timeout", cancel: Any = cancel_payload
) -> Saga[Order]:
    """A ticket whose reply may not come in 0.2 s: then the kitchen gets a
    cancel built by ``cancel``."""
    return Saga(
        name,
        [
            Step(
                "ticket",
                Remote(
                    "kitchen.create_ticket",
                    ticket_payload,
                    on_timeout=Remote("kitchen.cancel_ticket", cancel),
                ),
                timeout=0.2,
                retry=RetryPolicy(attempts=attempts, backoff=0.01, jitter=0),
            ),
        ],
        context=Order,
    )


async def test_a_participant_that_replies_late_receives_the_cancel(
    world: World,
) -> None:
    world.ticket_delay = 0.5
    orch = world.orchestrator()
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(timeout_saga(), Order(order_id=8)), 10)
        await asyncio.wait_for(world.cancelled.wait(), 10)
    assert result.status is SagaStatus.COMPENSATED
    assert result.error is not None
    assert result.error.type == "ReplyTimeout"
    [cancel] = world.cancels
    assert (cancel.step, cancel.attempt, cancel.reply_to) == ("ticket", 1, None)
    assert cancel.payload == {"order_id": 8}
    assert cancel.id == f"{result.saga_id}.ticket.t1"
    history = await world.store.history(result.saga_id)
    lines = [(h.kind, h.outcome) for h in history if h.step == "ticket"]
    assert lines == [("action", "timed_out"), ("cancel", "sent")]


async def test_each_timed_out_attempt_sends_its_cancel(world: World) -> None:
    world.ticket_delay = 3600
    orch = world.orchestrator()
    async with orch.serving():
        result = await asyncio.wait_for(
            orch.run(timeout_saga(attempts=2), Order(order_id=9)), 10
        )
        while len(world.cancels) < 2:  # noqa: ASYNC110 - the broker delivers both
            await asyncio.sleep(0.01)
    assert result.status is SagaStatus.COMPENSATED
    assert sorted(c.attempt for c in world.cancels) == [1, 2]
    history = await world.store.history(result.saga_id)
    sent = [h.attempt for h in history if h.kind == "cancel"]
    assert sent == [1, 2]


async def test_a_cancel_whose_payload_cannot_be_built_is_recorded(
    world: World,
) -> None:
    def broken(ctx: Order) -> dict[str, int]:
        raise ValueError("nothing to cancel with")

    world.ticket_delay = 3600
    saga = timeout_saga(name="order_broken_cancel", cancel=broken)
    result = await world.run(saga, 10)
    assert result.status is SagaStatus.COMPENSATED
    assert result.error is not None
    assert result.error.type == "ReplyTimeout"
    [line] = [
        h for h in await world.store.history(result.saga_id) if h.kind == "cancel"
    ]
    assert line.outcome == "failed"
    assert line.error is not None
    assert line.error.message == "nothing to cancel with"


async def test_recovery_sends_an_undo_left_unsent(world: World) -> None:
    """A worker died after committing the start of a fire-and-forget undo
    but before counting it sent (its message could not be built then): the
    next worker sends it and finishes the rollback."""
    saga = undo_saga()
    state = initial_state(saga, "left")
    for event in (
        SagaStarted(1.0),
        StepSucceeded("reserve", None, 2.0),
        StepSucceeded("ticket", {"ticket_id": 103}, 3.0),
        StepAttemptFailed("charge", ErrorInfo("Declined", "no"), False, 4.0),
    ):
        decision = decide(saga, state, event)
        state = decision.state
    assert decision.commands == (Compensate("ticket", 1),)
    record = SagaRecord(
        saga_id="left",
        saga_name=saga.name,
        status=state.status,
        version=1,
        state=state,
        context=Order(order_id=3).model_dump(),
        idempotency_key=None,
        created_at=1.0,
        updated_at=4.0,
        fingerprint=saga.fingerprint,
    )
    await world.store.create(record, [])
    orch = world.orchestrator()
    orch.register(saga)
    async with orch.serving():
        assert await orch.recover() == ["left"]
        result = await asyncio.wait_for(orch.wait("left"), 10)
        await asyncio.wait_for(world.undo_received.wait(), 10)
    assert result.status is SagaStatus.COMPENSATED
    assert world.undone == [("ticket", 1)]
    history = await world.store.history("left")
    assert [(h.step, h.kind, h.outcome) for h in history][:2] == [
        (None, "saga", "resumed"),
        ("ticket", "compensation", "sent"),
    ]
