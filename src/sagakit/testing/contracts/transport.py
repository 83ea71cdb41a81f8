"""The transport contract: written once, subclassed per adapter.

Every wait is an ``asyncio`` event (or a short poll of ``dead_letters``) with a
timeout, so a broken adapter fails in seconds instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from sagakit.errors import TransportError
from sagakit.messaging.envelope import (
    MAX_MESSAGE_BYTES,
    Envelope,
    MalformedMessage,
    decode,
)
from sagakit.ports.transport import DeadLetter, Transport

TIMEOUT = 10.0
"""Seconds to wait for something that should happen (a generous upper bound)."""

SETTLE = 0.2
"""Seconds to watch for something that should *not* happen (a duplicate)."""


def command(n: int = 0, *, type_: str = "kitchen.create_ticket") -> Envelope:
    return Envelope(
        kind="command",
        type=type_,
        correlation_id=f"saga-{n}:create_ticket:1",
        saga_id=f"saga-{n}",
        step="create_ticket",
        reply_to="replies",
        payload={"n": n, "items": ["soup", "bread"], "total": 12.5},
        headers={"trace": f"t{n}"},
        sent_at=1.5,
    )


def valid_json(**changes: object) -> bytes:
    raw = command().model_dump(mode="json")
    raw.update(changes)
    return json.dumps(raw).encode()


UNDECODABLE: dict[str, bytes] = {
    "not-json": b"\x00\xffnot json at all",
    "json-array": b"[1, 2, 3]",
    "wrong-version": valid_json(v=2),
    "unknown-kind": valid_json(kind="telegram"),
    "oversized": b" " * MAX_MESSAGE_BYTES + valid_json(),
}


def reason_for(body: bytes) -> str:
    with pytest.raises(MalformedMessage) as caught:
        decode(body)
    return caught.value.reason


class Recorder:
    """A handler that records envelopes and signals once ``expected`` ids arrived.

    ``fail`` decides, per call, whether the handler raises instead."""

    def __init__(
        self,
        expected: int = 1,
        *,
        fail: Callable[[Envelope, int], bool] | None = None,
    ) -> None:
        self.expected = expected
        self.fail = fail
        self.calls: list[Envelope] = []
        self.handled: list[Envelope] = []
        self.done = asyncio.Event()

    def attempts(self, message_id: str) -> int:
        return sum(1 for m in self.calls if m.id == message_id)

    async def __call__(self, message: Envelope) -> None:
        self.calls.append(message)
        await asyncio.sleep(0)  # let competing consumers interleave
        if self.fail is not None and self.fail(message, self.attempts(message.id)):
            raise ValueError(f"boom on {message.id}")
        self.handled.append(message)
        if len({m.id for m in self.handled}) >= self.expected:
            self.done.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.done.wait(), TIMEOUT)


async def eventually(
    probe: Callable[[], Awaitable[list[DeadLetter]]], count: int = 1
) -> list[DeadLetter]:
    """Poll ``probe`` until it returns at least ``count`` items."""
    async with asyncio.timeout(TIMEOUT):
        while len(found := await probe()) < count:  # noqa: ASYNC110 - a broker has no event for it
            await asyncio.sleep(0.02)
    return found


class TransportContract:
    """Subclass and provide a ``transport`` fixture (open, fresh, closed after)."""

    @pytest.fixture
    async def transport(self) -> Transport:
        raise NotImplementedError

    @pytest.fixture
    def queue(self) -> str:
        return f"contract-{uuid.uuid4().hex[:12]}"

    def dead_envelope(self, transport: Transport, body: bytes) -> Envelope:
        """The envelope a dead letter's ``body`` holds, as its handler saw it.

        Override for a wrapper that keeps dead letters as they travelled
        (``CodecTransport``: encrypted fields stay encrypted at rest)."""
        return decode(body)

    async def test_publish_then_consume_round_trips(
        self, transport: Transport, queue: str
    ) -> None:
        sent = command(7)
        recorder = Recorder()
        subscription = await transport.consume(queue, recorder)
        await transport.publish(queue, sent)
        await recorder.wait()
        await subscription.cancel()
        assert recorder.handled == [sent]

    async def test_publish_raw_of_valid_bytes_is_delivered(
        self, transport: Transport, queue: str
    ) -> None:
        recorder = Recorder()
        await transport.consume(queue, recorder)
        await transport.publish_raw(queue, valid_json(id="raw-1"))
        await recorder.wait()
        assert [m.id for m in recorder.handled] == ["raw-1"]

    async def test_every_message_is_handled_exactly_once(
        self, transport: Transport, queue: str
    ) -> None:
        sent = [command(n) for n in range(200)]
        recorder = Recorder(len(sent))
        await transport.consume(queue, recorder, prefetch=16)
        await asyncio.gather(*(transport.publish(queue, m) for m in sent))
        await recorder.wait()
        await asyncio.sleep(SETTLE)
        assert Counter(m.id for m in recorder.calls) == Counter(m.id for m in sent)
        assert {m.id: m for m in recorder.handled} == {m.id: m for m in sent}

    async def test_competing_consumers_split_the_messages(
        self, transport: Transport, queue: str
    ) -> None:
        sent = [command(n) for n in range(60)]
        ids = {m.id for m in sent}
        first, second = Recorder(), Recorder()
        both = asyncio.Event()

        def check() -> None:
            if {m.id for m in first.handled + second.handled} == ids:
                both.set()

        async def one(message: Envelope) -> None:
            await first(message)
            check()

        async def two(message: Envelope) -> None:
            await second(message)
            check()

        await transport.consume(queue, one, prefetch=1)
        await transport.consume(queue, two, prefetch=1)
        for message in sent:
            await transport.publish(queue, message)
        await asyncio.wait_for(both.wait(), TIMEOUT)
        await asyncio.sleep(SETTLE)
        handled = [m.id for m in first.calls + second.calls]
        assert len(handled) == len(ids), "a message was handled twice"
        assert first.calls
        assert second.calls

    async def test_a_failed_message_is_redelivered_then_handled(
        self, transport: Transport, queue: str
    ) -> None:
        sent = command(1)
        recorder = Recorder(fail=lambda _m, attempt: attempt == 1)
        await transport.consume(queue, recorder, max_deliveries=3)
        await transport.publish(queue, sent)
        await recorder.wait()
        assert recorder.attempts(sent.id) == 2
        assert recorder.handled == [sent]
        assert await transport.dead_letters(queue) == []

    async def test_a_message_failing_every_time_is_dead_lettered(
        self, transport: Transport, queue: str
    ) -> None:
        poison = command(1, type_="kitchen.poison")
        later = command(2)
        recorder = Recorder(fail=lambda m, _attempt: m.type == "kitchen.poison")
        await transport.consume(queue, recorder, max_deliveries=3)
        await transport.publish(queue, poison)

        dead = await eventually(lambda: transport.dead_letters(queue))
        assert len(dead) == 1
        assert dead[0].queue == queue
        assert self.dead_envelope(transport, dead[0].body) == poison
        assert "ValueError" in dead[0].reason
        assert f"boom on {poison.id}" in dead[0].reason
        assert dead[0].dead_at > 0
        assert recorder.attempts(poison.id) == 3

        await transport.publish(queue, later)  # the consumer is still running
        await recorder.wait()
        assert recorder.handled == [later]
        assert recorder.attempts(poison.id) == 3

    async def test_a_handler_rejecting_a_message_dead_letters_it_at_once(
        self, transport: Transport, queue: str
    ) -> None:
        rejected = command(1, type_="kitchen.unknown")
        later = command(2)
        calls: list[str] = []
        done = asyncio.Event()

        async def handler(message: Envelope) -> None:
            calls.append(message.id)
            if message.id == rejected.id:
                raise MalformedMessage("reply for unknown saga nope")
            done.set()

        await transport.consume(queue, handler, max_deliveries=5)
        await transport.publish(queue, rejected)
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert [d.reason for d in dead] == ["reply for unknown saga nope"]
        assert calls == [rejected.id]  # no redelivery
        await transport.publish(queue, later)
        await asyncio.wait_for(done.wait(), TIMEOUT)

    @pytest.mark.parametrize("case", sorted(UNDECODABLE))
    async def test_undecodable_bytes_are_dead_lettered_with_the_reason(
        self, transport: Transport, queue: str, case: str
    ) -> None:
        body = UNDECODABLE[case]
        recorder = Recorder()
        await transport.consume(queue, recorder)
        await transport.publish_raw(queue, body)

        dead = await eventually(lambda: transport.dead_letters(queue))
        assert [(d.queue, d.body, d.reason) for d in dead] == [
            (queue, body, reason_for(body))
        ]

        after = command(3)
        await transport.publish(queue, after)  # the consumer is still running
        await recorder.wait()
        assert recorder.calls == [after]

    async def test_deeply_nested_json_is_dead_lettered(
        self, transport: Transport, queue: str
    ) -> None:
        """``json.loads`` raises ``RecursionError`` here, not a decode error."""
        body = b"[" * 100_000
        recorder = Recorder()
        await transport.consume(queue, recorder, prefetch=1)
        await transport.publish_raw(queue, body)
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert [d.body for d in dead] == [body]
        assert dead[0].reason

        after = command(3)
        await transport.publish(queue, after)
        await recorder.wait()
        assert recorder.calls == [after]

    async def test_a_handler_raising_cancelled_error_is_a_failure(
        self, transport: Transport, queue: str
    ) -> None:
        """Only cancelling the subscription stops a consumer; a handler that
        raises ``CancelledError`` on its own has failed this delivery."""
        sent = [command(1), command(2)]
        calls: list[str] = []
        done = asyncio.Event()

        async def handler(message: Envelope) -> None:
            calls.append(message.id)
            if calls.count(message.id) == 1:
                raise asyncio.CancelledError
            if Counter(calls) == {m.id: 2 for m in sent}:
                done.set()

        await transport.consume(queue, handler, prefetch=1, max_deliveries=2)
        for message in sent:
            await transport.publish(queue, message)
        await asyncio.wait_for(done.wait(), TIMEOUT)
        assert Counter(calls) == {m.id: 2 for m in sent}
        assert await transport.dead_letters(queue) == []

    async def test_dead_letters_are_read_oldest_first_and_not_removed(
        self, transport: Transport, queue: str
    ) -> None:
        bodies = [b"first", b"[2]", b"third"]
        await transport.consume(queue, Recorder(), prefetch=1)
        for body in bodies:
            await transport.publish_raw(queue, body)
        dead = await eventually(lambda: transport.dead_letters(queue), 3)
        assert [d.body for d in dead] == bodies
        assert [d.body for d in await transport.dead_letters(queue)] == bodies
        assert [d.body for d in await transport.dead_letters(queue, 2)] == bodies[:2]

    async def test_replayed_dead_letters_are_handled_once_the_handler_is_fixed(
        self, transport: Transport, queue: str
    ) -> None:
        broken = {"now": True}
        recorder = Recorder(2, fail=lambda _m, _attempt: broken["now"])
        await transport.consume(queue, recorder, max_deliveries=2)
        for n in range(3):
            await transport.publish(queue, command(n))
        dead = await eventually(lambda: transport.dead_letters(queue), 3)
        assert len(dead) == 3
        broken["now"] = False  # the fix is deployed

        assert await transport.replay_dead_letters(queue, limit=2) == 2  # oldest
        await recorder.wait()
        replayed = {decode(d.body).id for d in dead[:2]}
        assert {m.id for m in recorder.handled} == replayed
        left = await transport.dead_letters(queue)
        assert [d.body for d in left] == [dead[2].body]

        recorder.expected, recorder.done = 3, asyncio.Event()
        assert await transport.replay_dead_letters(queue) == 1
        await recorder.wait()
        assert await transport.dead_letters(queue) == []
        assert await transport.replay_dead_letters(queue) == 0
        await asyncio.sleep(SETTLE)
        assert sorted(m.id for m in recorder.handled) == sorted(
            decode(d.body).id for d in dead
        )

    async def test_replaying_an_unknown_queue_moves_nothing(
        self, transport: Transport, queue: str
    ) -> None:
        assert await transport.replay_dead_letters(queue) == 0
        assert await transport.dead_letters(queue) == []

    async def test_dead_letters_of_an_unknown_queue_is_empty(
        self, transport: Transport, queue: str
    ) -> None:
        assert await transport.dead_letters(queue) == []

    async def test_cancel_stops_delivery_and_unacked_messages_come_back(
        self, transport: Transport, queue: str
    ) -> None:
        first, second = command(1), command(2)
        started = asyncio.Event()
        seen: list[Envelope] = []

        async def stuck(message: Envelope) -> None:
            seen.append(message)
            started.set()
            await asyncio.Event().wait()  # never acknowledges

        subscription = await transport.consume(queue, stuck, prefetch=1)
        await transport.publish(queue, first)
        await asyncio.wait_for(started.wait(), TIMEOUT)
        await asyncio.wait_for(subscription.cancel(), TIMEOUT)

        await transport.publish(queue, second)
        recorder = Recorder(2)
        await transport.consume(queue, recorder)
        await recorder.wait()
        assert seen == [first]
        assert sorted(m.id for m in recorder.calls) == sorted([first.id, second.id])

    async def test_messages_published_before_a_consumer_are_kept(
        self, transport: Transport, queue: str
    ) -> None:
        sent = [command(n) for n in range(5)]
        for message in sent:
            await transport.publish(queue, message)
        recorder = Recorder(len(sent))
        await transport.consume(queue, recorder)
        await recorder.wait()
        assert sorted(m.id for m in recorder.calls) == sorted(m.id for m in sent)

    async def test_an_oversized_envelope_is_refused_at_publish(
        self, transport: Transport, queue: str
    ) -> None:
        huge = command().model_copy(update={"payload": {"x": "y" * MAX_MESSAGE_BYTES}})
        with pytest.raises(MalformedMessage, match="over the"):
            await transport.publish(queue, huge)

    async def test_consume_refuses_nonsense_limits(
        self, transport: Transport, queue: str
    ) -> None:
        with pytest.raises(TransportError):
            await transport.consume(queue, Recorder(), prefetch=0)
        with pytest.raises(TransportError):
            await transport.consume(queue, Recorder(), max_deliveries=0)

    async def test_publish_after_close_raises(
        self, transport: Transport, queue: str
    ) -> None:
        await transport.publish(queue, command(1))
        await transport.close()
        with pytest.raises(TransportError, match="closed"):
            await transport.publish(queue, command(2))
        with pytest.raises(TransportError, match="closed"):
            await transport.publish_raw(queue, b"{}")
        with pytest.raises(TransportError, match="closed"):
            await transport.consume(queue, Recorder())
        await transport.close()  # closing twice is harmless
