"""RabbitMQ: acknowledgements batched with ``multiple``, publishes written
many at once (``publish_many``) and batches of envelopes (opt-in), against
the real broker."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step
from sagakit.definition import Remote
from sagakit.errors import TransportError
from sagakit.messaging.envelope import Envelope, decode, encode
from sagakit.participant import Participant
from sagakit.ports.transport import BatchPublisher
from sagakit.testing.contracts.transport import Recorder, command, eventually
from tests.conftest import delete_rabbitmq_queues

if TYPE_CHECKING:
    from sagakit.adapters.transport.rabbitmq import RabbitTransport

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def transport(rabbit_transport: RabbitTransport) -> RabbitTransport:
    return rabbit_transport


async def ready(transport: RabbitTransport, queue: str) -> int:
    """Messages of ``queue`` ready for delivery (not held by a consumer)."""
    import aio_pika  # noqa: PLC0415 - the driver is an optional extra

    from tests.conftest import RABBITMQ_URL  # noqa: PLC0415

    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(
            transport.queue_name(queue), passive=True
        )
        return declared.declaration_result.message_count or 0


async def test_a_delivery_still_handled_is_never_acknowledged_with_later_ones(
    transport: RabbitTransport,
) -> None:
    """Deliveries 2-5 finish while 1 is still handled: they are acknowledged
    (one by one, as 1 blocks a ``multiple`` ack); 1 never is, so stopping
    the consumer puts exactly it back in the queue."""
    queue = "acks"
    sent = [command(i) for i in range(1, 6)]
    for message in sent:
        await transport.publish(queue, message)
    finished: list[str] = []
    all_but_first = asyncio.Event()

    async def handler(message: Envelope) -> None:
        if message.id == sent[0].id:
            await asyncio.Event().wait()  # until the consumer is cancelled
        finished.append(message.id)
        if len(finished) == len(sent) - 1:
            all_but_first.set()

    subscription = await transport.consume(queue, handler, prefetch=10)
    async with asyncio.timeout(10):
        await all_but_first.wait()
        while subscription.acks.sent < len(sent) - 1:  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0.01)
    await subscription.cancel()
    assert await ready(transport, queue) == 1
    again = Recorder(expected=1)
    await transport.consume(queue, again)
    async with asyncio.timeout(10):
        await again.done.wait()
    assert [m.id for m in again.handled] == [sent[0].id]


async def test_settled_deliveries_are_acknowledged_together(
    transport: RabbitTransport,
) -> None:
    """Handled in order, many deliveries cost fewer ack frames than messages,
    and none is left in the queue once the consumer stops."""
    queue = "many"
    count = 200
    assert isinstance(transport, BatchPublisher)
    sent = [command(i) for i in range(count)]
    confirms = await transport.publish_many([(queue, encode(m)) for m in sent])
    await asyncio.gather(*confirms)
    recorder = Recorder(expected=count)
    subscription = await transport.consume(queue, recorder, prefetch=50)
    async with asyncio.timeout(20):
        await recorder.done.wait()
    await subscription.cancel()  # acknowledges what is settled first
    assert sorted(m.id for m in recorder.handled) == sorted(m.id for m in sent)
    assert 0 < subscription.acks.sent < count
    assert await ready(transport, queue) == 0


async def test_publish_many_to_a_deleted_queue_fails_that_message(
    transport: RabbitTransport,
) -> None:
    """Routing stays ``mandatory``: a message the broker cannot route fails
    with a ``TransportError``; the others in the same write are confirmed."""
    await transport.publish_raw("kept", encode(command(1)))
    await transport.publish_raw("gone", encode(command(2)))
    await delete_rabbitmq_queues(transport.queue_name("gone"))
    confirms = await transport.publish_many(
        [("kept", encode(command(3))), ("gone", encode(command(4)))]
    )
    kept, gone = await asyncio.gather(*confirms, return_exceptions=True)
    assert kept is None
    assert isinstance(gone, TransportError)
    assert await ready(transport, "kept") == 2


# -- batches (opt-in) ------------------------------------------------------------


@pytest.fixture
async def batching(rabbit_transport: RabbitTransport) -> RabbitTransport:
    rabbit_transport.batch = True
    return rabbit_transport


async def test_messages_published_together_travel_as_one_batch(
    batching: RabbitTransport,
) -> None:
    """Twenty publishes at the same moment: one broker message, twenty
    envelopes handled one by one."""
    first = command(0)
    await batching.publish("together", first)  # alone: declares the queue
    sent = [command(i) for i in range(1, 21)]
    await asyncio.gather(*(batching.publish("together", m) for m in sent))
    assert await ready(batching, "together") == 2
    sent.append(first)
    recorder = Recorder(expected=len(sent))
    await batching.consume("together", recorder)
    async with asyncio.timeout(10):
        await recorder.done.wait()
    assert sorted(m.id for m in recorder.handled) == sorted(m.id for m in sent)


async def test_a_batch_element_that_keeps_failing_is_dead_lettered_alone(
    batching: RabbitTransport,
) -> None:
    """The others are handled once; the failing one is sent again alone,
    counted, until it goes to the dead-letter queue with its reason."""
    first = command(9)
    await batching.publish("parts", first)  # alone: declares the queue
    sent = [command(i) for i in range(3)]
    await asyncio.gather(*(batching.publish("parts", m) for m in sent))
    assert await ready(batching, "parts") == 2
    bad = sent[1].id
    recorder = Recorder(expected=3, fail=lambda message, _: message.id == bad)
    await batching.consume("parts", recorder, max_deliveries=3)
    dead = await eventually(lambda: batching.dead_letters("parts"))
    assert [decode(d.body).id for d in dead] == [bad]
    assert "handler failed 3 times" in dead[0].reason
    assert sorted(m.id for m in recorder.handled) == sorted(
        m.id for m in [first, *sent] if m.id != bad
    )
    assert [m.id for m in recorder.calls].count(bad) == 3


async def test_a_malformed_batch_is_dead_lettered_whole_and_a_bad_element_alone(
    batching: RabbitTransport,
) -> None:
    good = command(1)
    await batching.publish_raw("mixed", b'{"batch":7,"messages":[{}]}')
    await batching.publish_raw(
        "mixed", b'{"batch":1,"messages":[' + encode(good) + b',{"v":1}]}'
    )
    recorder = Recorder(expected=1)
    await batching.consume("mixed", recorder)
    dead = await eventually(lambda: batching.dead_letters("mixed"), count=2)
    reasons = sorted(d.reason for d in dead)
    assert "unsupported batch version 7" in reasons[1]
    assert reasons[0].startswith("kind:") or "kind" in reasons[0]
    assert [m.id for m in recorder.handled] == [good.id]


async def test_remote_sagas_run_over_batches(tmp_path: Path, rabbitmq_url: str) -> None:
    """Orchestrator and participant both batching: concurrent sagas
    succeed, each command handled once."""
    from sagakit.adapters.transport.rabbitmq import RabbitTransport  # noqa: PLC0415

    prefix = f"sagakit-test-{uuid.uuid4().hex[:12]}"
    url = f"{rabbitmq_url}?batch=true"
    orchestrating = await RabbitTransport.connect(url, prefix=prefix)
    serving = await RabbitTransport.connect(rabbitmq_url, prefix=prefix)
    serving.batch = True
    assert orchestrating.batch
    assert serving.batch
    handled: list[int] = []
    kitchen = Participant("kitchen", serving, SQLiteStore(tmp_path / "kitchen.db"))

    @kitchen.handler("kitchen.ticket")
    async def ticket(cmd: dict[str, int]) -> dict[str, int]:
        handled.append(cmd["n"])
        return {"ticket": cmd["n"]}

    saga = Saga(
        "batched",
        [
            Step(
                "ticket", Remote("kitchen.ticket", lambda ctx: {"n": ctx.n}), timeout=30
            )
        ],
        context=Numbered,
    )
    orch = Orchestrator(
        SQLiteStore(tmp_path / "orders.db"), [saga], transport=orchestrating
    )
    try:
        await kitchen.start()
        async with orch.serving():
            results = await asyncio.gather(
                *(orch.run(saga, Numbered(n=n)) for n in range(30))
            )
        assert {r.status for r in results} == {SagaStatus.SUCCEEDED}
        assert sorted(handled) == list(range(30))
        assert sorted(r.results["ticket"]["ticket"] for r in results) == list(range(30))
    finally:
        await kitchen.stop()
        await orch.close()
        await orchestrating.close()
        await serving.close()
        await delete_rabbitmq_queues(
            *sorted(orchestrating.declared_queues | serving.declared_queues)
        )


class Numbered(BaseModel):
    n: int = 0


def test_the_batch_url_parameter_must_say_true_or_false() -> None:
    from sagakit.adapters.transport.rabbitmq import batch_option  # noqa: PLC0415

    assert batch_option("amqp://h/?batch=true&heartbeat=5") == (
        "amqp://h/?heartbeat=5",
        True,
    )
    assert batch_option("amqp://h/") == ("amqp://h/", False)
    with pytest.raises(TransportError, match="batch='maybe'"):
        batch_option("amqp://h/?batch=maybe")


async def test_frames_wait_in_order_while_the_writer_queue_is_full() -> None:
    """aiormq's writer queue holds a few frames: what a transport gathers
    while it is full waits, in order, and goes in as room frees up."""
    from sagakit.adapters.transport.amqp_writes import Writes  # noqa: PLC0415

    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)
    writes = Writes()
    for payload in (b"a", b"b", b"c"):
        writes.add(queue, payload)
        writes.flush()  # one frame each
    got = []
    async with asyncio.timeout(5):
        for _ in range(3):
            got.append(getattr(await queue.get(), "payload", None))
    assert got == [b"a", b"b", b"c"]
    writes.add(queue, b"d")
    writes.add(queue, b"e")
    await asyncio.sleep(0)  # the next turn of the loop: one frame of both
    assert getattr(queue.get_nowait(), "payload", None) == b"de"
