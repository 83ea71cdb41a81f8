"""RabbitMQ: acknowledgements batched with ``multiple`` and publishes written
many at once (``publish_many``), against the real broker."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from sagakit.errors import TransportError
from sagakit.messaging.envelope import Envelope, encode
from sagakit.ports.transport import BatchPublisher
from sagakit.testing.contracts.transport import Recorder, command
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
