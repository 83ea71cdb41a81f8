"""Fuzz the running consumers over the in-process transport.

An orchestrator with a saga waiting on a remote reply, its participant, and a
choreography event bus get batches of hostile messages on their queues. Then:

* every message the decoder refuses is dead-lettered with the decoder's reason,
  and every other bad message is dead-lettered with a one-line reason or
  dropped (a late reply) -- never a crash;
* the waiting saga's state is untouched (same version, still running);
* the consumers keep running: good messages sent after the batch are handled.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step
from sagakit.adapters.store.event_memory import InMemoryEventStore
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.choreography import EventBus
from sagakit.definition import Remote
from sagakit.messaging.envelope import Envelope, MalformedMessage, decode, encode
from sagakit.participant import Participant
from tests.fuzz.strategies import FUZZ, hostile_messages

pytestmark = pytest.mark.fuzz

REPLIES = "sagakit.replies"
E2E = FUZZ.__class__(FUZZ, max_examples=12)
TIMEOUT = 10.0


class Order(BaseModel):
    order_id: int = 1


class Charge(BaseModel):
    order_id: int


def charge_payload(ctx: Order) -> Charge:
    return Charge(order_id=ctx.order_id)


SAGA: Saga[Order] = Saga(
    "order",
    [Step("charge", Remote("accounting.charge", charge_payload), timeout=600)],
    context=Order,
)


async def settle(
    transport: InProcessTransport,
    queues: list[str],
    progress: Callable[[], Awaitable[object]],
) -> None:
    """Until the queues are empty and nothing moves for a few polls."""
    quiet, last = 0, None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while quiet < 5:
        assert loop.time() < deadline, "the consumers did not settle"
        await asyncio.sleep(0.005)
        now = (tuple(transport.pending(q) for q in queues), await progress())
        quiet = quiet + 1 if now == last and not any(now[0]) else 0
        last = now


def refusal(body: bytes) -> str | None:
    """The decoder's reason for ``body``, or None if it decodes."""
    try:
        decode(body)
    except MalformedMessage as exc:
        return exc.reason
    return None


async def check_dead_letters(
    transport: InProcessTransport, queue: str, batch: list[bytes]
) -> None:
    dead = await transport.dead_letters(queue, limit=10_000)
    for letter in dead:
        assert letter.reason.strip()
        assert "\n" not in letter.reason
    reasons = [(d.body, d.reason) for d in dead]
    for body in batch:
        reason = refusal(body)
        if reason is not None:
            assert (body, reason) in reasons, (body[:100], reason)


@st.composite
def targeted_replies(draw: st.DrawFn) -> dict[str, Any]:
    """Replies aimed at the waiting saga (or none) that must not change it."""
    fields: dict[str, Any] = {
        "kind": draw(st.sampled_from(["reply", "reply", "command", "event"])),
        "step": draw(st.sampled_from(["charge", "nope", "", None, "charge\n"])),
        "attempt": draw(st.integers(min_value=1, max_value=4)),
        "compensation": draw(st.booleans()),
        "ok": draw(st.sampled_from([True, False, None])),
        "payload": draw(st.sampled_from([{}, {"x": 1}, {"order_id": "no"}])),
        "known_saga": draw(st.booleans()),
        "saga_id": draw(st.text(min_size=1, max_size=12)),
    }
    legit = (
        fields["known_saga"]
        and fields["kind"] == "reply"
        and fields["step"] == "charge"
        and fields["attempt"] == 1
        and not fields["compensation"]
        and fields["ok"] is not None
    )
    if legit:  # a real reply would (rightly) move the saga on
        fields["attempt"] = 2
    return fields


def reply_body(fields: dict[str, Any], saga_id: str) -> bytes:
    target = saga_id if fields["known_saga"] else fields["saga_id"]
    return encode(
        Envelope(
            kind=fields["kind"],
            type="accounting.charge",
            correlation_id=f"{target}:charge:{fields['attempt']}",
            saga_id=target,
            step=fields["step"],
            attempt=fields["attempt"],
            compensation=fields["compensation"],
            ok=fields["ok"],
            payload=fields["payload"],
        )
    )


async def orchestrated(
    replies: list[bytes], commands: list[bytes], targeted: list[dict[str, Any]]
) -> None:
    transport = InProcessTransport()
    gate = asyncio.Event()
    entered = asyncio.Event()
    first: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "orders.db")
        accounting = Participant("accounting", transport, InMemoryStore())

        @accounting.handler("accounting.charge")
        async def charge(cmd: Charge, message: Envelope) -> dict[str, str]:
            if first and message.saga_id == first[0]:
                entered.set()
                await gate.wait()  # saga A waits on its reply during the fuzz
            return {"charged": str(cmd.order_id)}

        orch = Orchestrator(store, [SAGA], transport=transport)
        try:
            await accounting.start()
            async with orch.serving():
                saga_id = await orch.start(SAGA, Order(order_id=1))
                first.append(saga_id)
                await asyncio.wait_for(entered.wait(), TIMEOUT)
                before = await store.get(saga_id)

                fuzzed = replies + [reply_body(f, saga_id) for f in targeted]
                for body in fuzzed:
                    await transport.publish_raw(REPLIES, body)
                for body in commands:
                    await transport.publish_raw("accounting", body)

                async def progress() -> object:
                    dead = await transport.dead_letters(REPLIES, limit=10_000)
                    cmds = await transport.dead_letters("accounting", limit=10_000)
                    return len(dead), len(cmds), accounting.handled

                await settle(transport, [REPLIES, "accounting"], progress)

                after = await store.get(saga_id)
                assert after.version == before.version
                assert after.status is SagaStatus.RUNNING
                await check_dead_letters(transport, REPLIES, fuzzed)
                await check_dead_letters(transport, "accounting", commands)
                for body in commands:  # the participant's queue: non-commands too
                    message = None if refusal(body) else decode(body)
                    if message is not None and message.kind != "command":
                        dead = await transport.dead_letters("accounting", 10_000)
                        assert body in [d.body for d in dead]

                # good messages after the batch are still handled
                gate.set()
                done = await asyncio.wait_for(orch.wait(saga_id), TIMEOUT)
                assert done.status is SagaStatus.SUCCEEDED, done.error
                fresh = await asyncio.wait_for(
                    orch.run(SAGA, Order(order_id=2)), TIMEOUT
                )
                assert fresh.status is SagaStatus.SUCCEEDED, fresh.error
                assert fresh.results == {"charge": {"charged": "2"}}
        finally:
            await accounting.stop()
            await orch.close()
            await transport.close()
            await store.close()


@E2E
@given(
    replies=st.lists(hostile_messages, max_size=25),
    commands=st.lists(hostile_messages, max_size=25),
    targeted=st.lists(targeted_replies(), max_size=15),
)
def test_orchestrator_and_participant_survive_hostile_messages(
    replies: list[bytes], commands: list[bytes], targeted: list[dict[str, Any]]
) -> None:
    asyncio.run(orchestrated(replies, commands, targeted))


class Paid(BaseModel):
    bill_id: str


async def choreographed(events: list[bytes]) -> None:
    transport = InProcessTransport()
    store = InMemoryEventStore()
    billing = EventBus("billing", transport, store)
    parking = EventBus("parking", transport, store)
    seen: list[str] = []

    @parking.on("bill.paid")
    async def reserve(event: Paid) -> None:
        seen.append(event.bill_id)

    try:
        await parking.start()
        for body in events:
            await transport.publish_raw(parking.queue, body)

        async def progress() -> object:
            dead = await transport.dead_letters(parking.queue, limit=10_000)
            return len(dead), parking.handled, parking.duplicates

        await settle(transport, [parking.queue], progress)
        await check_dead_letters(transport, parking.queue, events)
        dead = [d.body for d in await transport.dead_letters(parking.queue, 10_000)]
        for body in events:
            message = None if refusal(body) else decode(body)
            if message is not None and message.kind != "event":
                assert body in dead

        # a good event after the batch is still handled
        before = len(seen)
        await billing.publish("bill.paid", Paid(bill_id="b-42"), correlation_id="c-1")
        await settle(transport, [parking.queue], progress)
        assert seen[before:] == ["b-42"]
    finally:
        await parking.stop()
        await transport.close()
        await store.close()


@E2E
@given(
    events=st.lists(
        hostile_messages
        | st.builds(
            lambda kind, type_, payload: encode(
                Envelope(kind=kind, type=type_, correlation_id="c", payload=payload)
            ),
            st.sampled_from(["event", "command", "reply"]),
            st.sampled_from(["bill.paid", "bill.unknown"]),
            st.sampled_from([{}, {"bill_id": 1}, {"bill_id": "b-1"}]),
        ),
        max_size=30,
    )
)
def test_event_bus_survives_hostile_messages(events: list[bytes]) -> None:
    asyncio.run(choreographed(events))
