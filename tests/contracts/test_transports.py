"""The transport contract against every adapter (RabbitMQ when it is reachable)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.errors import TransportError
from sagakit.messaging.envelope import decode
from sagakit.ports.transport import Transport
from tests.conftest import delete_rabbitmq_queues
from tests.contracts.transport_contract import (
    Recorder,
    TransportContract,
    command,
    eventually,
)

if TYPE_CHECKING:
    from sagakit.adapters.transport.rabbitmq import RabbitTransport


class TestInProcessTransport(TransportContract):
    @pytest.fixture
    async def transport(self) -> AsyncIterator[Transport]:
        transport = InProcessTransport()
        yield transport
        await transport.close()


@pytest.mark.rabbitmq
class TestRabbitTransport(TransportContract):
    """Each test gets its own queue prefix; its queues are deleted afterwards."""

    @pytest.fixture
    async def transport(self, rabbitmq_url: str) -> AsyncIterator[RabbitTransport]:
        rabbitmq = pytest.importorskip("sagakit.adapters.transport.rabbitmq")
        prefix = f"sagakit-test-{uuid.uuid4().hex[:12]}"
        transport = await rabbitmq.RabbitTransport.connect(rabbitmq_url, prefix=prefix)
        try:
            yield transport
        finally:
            await transport.close()
            await delete_rabbitmq_queues(*sorted(transport.declared_queues))

    async def test_messages_are_persistent_json_with_the_envelope_id(
        self, transport: RabbitTransport, queue: str, rabbitmq_url: str
    ) -> None:
        import aio_pika  # noqa: PLC0415 - the driver is an optional extra

        sent = command(1)
        await transport.publish(queue, sent)
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            # declaring with different flags would fail: it is durable
            declared = await channel.declare_queue(
                transport.queue_name(queue), durable=True
            )
            incoming = await declared.get(no_ack=False)
            assert incoming.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert incoming.content_type == "application/json"
            assert incoming.message_id == sent.id
            assert decode(incoming.body) == sent
            await incoming.nack(requeue=True)

    async def test_dead_letters_keep_the_reason_in_headers(
        self, transport: RabbitTransport, queue: str, rabbitmq_url: str
    ) -> None:
        import aio_pika  # noqa: PLC0415 - the driver is an optional extra

        await transport.consume(queue, Recorder())
        await transport.publish_raw(queue, b"[1]")
        dead = await eventually(lambda: transport.dead_letters(queue))
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            dlq = await channel.declare_queue(
                f"{transport.queue_name(queue)}.dlq", passive=True
            )
            incoming = await dlq.get(no_ack=False)
            assert incoming.headers["x-sagakit-reason"] == dead[0].reason
            assert incoming.headers["x-sagakit-dead-at"] == dead[0].dead_at
            assert incoming.headers["x-sagakit-queue"] == queue
            await incoming.nack(requeue=True)


async def test_connecting_to_a_closed_port_is_a_transport_error() -> None:
    rabbitmq = pytest.importorskip("sagakit.adapters.transport.rabbitmq")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"amqp://guest:secret@127.0.0.1:{port}/"
    with pytest.raises(TransportError) as caught:
        await rabbitmq.RabbitTransport.connect(url, connect_timeout=5)
    message = str(caught.value)
    assert (
        message == f"cannot connect to RabbitMQ at 127.0.0.1:{port}: connection refused"
    )
    assert "secret" not in message
    assert isinstance(caught.value.__cause__, OSError)
