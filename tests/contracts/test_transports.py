"""The transport contract against every adapter (brokers when they are reachable)."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.errors import TransportError
from sagakit.messaging.envelope import Envelope, decode, encode
from sagakit.ports.transport import Transport
from tests.conftest import delete_rabbitmq_queues, delete_redis_keys
from tests.contracts.transport_contract import (
    Recorder,
    TransportContract,
    command,
    eventually,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from sagakit.adapters.transport.celery import CeleryTransport
    from sagakit.adapters.transport.rabbitmq import RabbitTransport
    from sagakit.adapters.transport.redis import RedisTransport


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


@pytest.mark.celery
@pytest.mark.rabbitmq
class TestCeleryTransport(TransportContract):
    """Celery task messages on RabbitMQ; each test's queues are deleted afterwards."""

    @pytest.fixture
    async def transport(self, rabbitmq_url: str) -> AsyncIterator[CeleryTransport]:
        celery = pytest.importorskip("sagakit.adapters.transport.celery")
        transport = await celery.CeleryTransport.connect(rabbitmq_url)
        try:
            yield transport
        finally:
            await transport.close()
            await delete_rabbitmq_queues(*sorted(transport.declared_queues))

    async def test_messages_are_celery_v2_json_task_messages(
        self, transport: CeleryTransport, queue: str, rabbitmq_url: str
    ) -> None:
        import aio_pika  # noqa: PLC0415 - the driver is an optional extra

        sent = command(1)
        reply = sent.reply(ok=True, payload={"ticket": 9})
        failed = sent.reply(ok=False, error={"type": "Full"})
        for message in (sent, reply, failed):
            await transport.publish(queue, message)
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, durable=True)
            tasks = []
            for message in (sent, reply, failed):
                incoming = await declared.get(no_ack=True)
                assert incoming.content_type == "application/json"
                assert incoming.content_encoding == "utf-8"
                assert incoming.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
                assert incoming.headers["lang"] == "py"
                assert incoming.headers["id"] == message.id
                assert incoming.correlation_id == message.id
                args, kwargs, embed = json.loads(incoming.body)
                assert args == [message.model_dump(mode="json")]
                assert kwargs == {}
                assert set(embed) == {"callbacks", "errbacks", "chain", "chord"}
                tasks.append(incoming.headers["task"])
        assert tasks == [
            "kitchen.create_ticket",
            "kitchen.create_ticket.response.success",
            "kitchen.create_ticket.response.failure",
        ]

    @pytest.mark.parametrize(
        ("content_type", "expected"),
        [
            ("application/x-python-serialize", "(pickle) refused"),
            ("application/x-yaml", "refused"),
            (None, "content type missing refused"),
        ],
    )
    async def test_non_json_task_messages_are_dead_lettered_unread(
        self,
        transport: CeleryTransport,
        queue: str,
        rabbitmq_url: str,
        content_type: str | None,
        expected: str,
    ) -> None:
        import aio_pika  # noqa: PLC0415 - the driver is an optional extra

        body = b"\x80\x04\x95 not really a pickle"
        await transport.consume(queue, Recorder())
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    content_type=content_type,
                    headers={"task": "kitchen.create_ticket", "id": "x"},
                ),
                routing_key=queue,
            )
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert [d.body for d in dead] == [body]
        assert expected in dead[0].reason
        assert "never unpickles" in dead[0].reason

    @pytest.mark.parametrize(
        "case",
        [
            (
                [[1], {}, {}],
                {"task": "kitchen.create_ticket"},
                "task argument 0 is not an envelope object but int",
            ),
            (
                [[], {"envelope": {}}, {}],
                {"task": "kitchen.create_ticket"},
                "task argument 0 is not an envelope object but missing",
            ),
            (
                {"task": "kitchen.create_ticket", "id": "x", "args": [], "kwargs": {}},
                {},
                "protocol v1 is not supported",
            ),
            (
                [[command().model_dump(mode="json")], {}, {}],
                {"task": "kitchen.other"},
                "does not carry a command of type 'kitchen.create_ticket'",
            ),
            (
                [[command().model_dump(mode="json")], {}, {}],
                {"task": "kitchen.create_ticket", "compression": "application/x-gzip"},
                "compressed task messages",
            ),
        ],
        ids=["int-argument", "no-argument", "protocol-v1", "wrong-task", "gzip"],
    )
    async def test_task_messages_without_an_envelope_are_dead_lettered(
        self,
        transport: CeleryTransport,
        queue: str,
        rabbitmq_url: str,
        case: tuple[object, dict[str, str], str],
    ) -> None:
        import aio_pika  # noqa: PLC0415 - the driver is an optional extra

        body, headers, expected = case
        recorder = Recorder()
        await transport.consume(queue, recorder)
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(
                    json.dumps(body).encode(),
                    content_type="application/json",
                    headers=dict(headers),
                ),
                routing_key=queue,
            )
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert expected in dead[0].reason
        after = command(3)
        await transport.publish(queue, after)
        await recorder.wait()
        assert recorder.calls == [after]

    async def test_a_bare_envelope_is_accepted(
        self, transport: CeleryTransport, queue: str, rabbitmq_url: str
    ) -> None:
        """What ``RabbitTransport`` sends: JSON envelope bytes, no task headers."""
        import aio_pika  # noqa: PLC0415 - the driver is an optional extra

        sent = command(4)
        recorder = Recorder()
        await transport.consume(queue, recorder)
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(encode(sent), content_type="application/json"),
                routing_key=queue,
            )
        await recorder.wait()
        assert recorder.handled == [sent]

    async def test_dead_letters_keep_the_task_message_as_it_came(
        self, transport: CeleryTransport, queue: str, rabbitmq_url: str
    ) -> None:
        import aio_pika  # noqa: PLC0415 - the driver is an optional extra

        poison = command(5)
        await transport.consume(
            queue, Recorder(fail=lambda _m, _a: True), max_deliveries=2
        )
        await transport.publish(queue, poison)
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert decode(dead[0].body) == poison
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            dlq = await channel.declare_queue(f"{queue}.dlq", passive=True)
            incoming = await dlq.get(no_ack=False)
            assert incoming.headers["task"] == "kitchen.create_ticket"
            assert incoming.headers["id"] == poison.id
            assert incoming.headers["x-sagakit-deliveries"] == 1
            assert incoming.headers["x-sagakit-reason"] == dead[0].reason
            assert incoming.headers["x-sagakit-queue"] == queue
            assert json.loads(incoming.body)[0] == [poison.model_dump(mode="json")]
            await incoming.nack(requeue=True)

    async def test_only_amqp_broker_urls_are_accepted(self) -> None:
        celery = pytest.importorskip("sagakit.adapters.transport.celery")
        with pytest.raises(TransportError, match="AMQP"):
            await celery.CeleryTransport.connect("redis://127.0.0.1:6379/0")


async def test_connecting_celery_to_a_closed_port_is_a_transport_error() -> None:
    celery = pytest.importorskip("sagakit.adapters.transport.celery")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"pyamqp://guest:secret@127.0.0.1:{port}//"
    with pytest.raises(TransportError) as caught:
        await celery.CeleryTransport.connect(url, connect_timeout=5)
    message = str(caught.value)
    assert message == (
        f"cannot connect to the Celery broker at 127.0.0.1:{port}: connection refused"
    )
    assert "secret" not in message
    assert isinstance(caught.value.__cause__, OSError)


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


CLAIM_IDLE = 0.2
"""Seconds before a Redis entry left pending is claimed again (short for tests)."""


async def settled(client: Redis, key: str, *, kept: int = 0) -> None:
    """Wait until nothing in ``key`` is pending and ``kept`` entries remain."""
    async with asyncio.timeout(5):
        while (await client.xpending(key, "sagakit"))["pending"] or (  # noqa: ASYNC110 - no event for it
            await client.xlen(key) != kept
        ):
            await asyncio.sleep(0.02)


@pytest.mark.redis
class TestRedisTransport(TransportContract):
    """Each test gets its own key prefix; its keys are deleted afterwards."""

    @pytest.fixture
    async def transport(self, redis_url: str) -> AsyncIterator[RedisTransport]:
        redis = pytest.importorskip("sagakit.adapters.transport.redis")
        prefix = f"sagakit-test-{uuid.uuid4().hex[:12]}"
        transport = await redis.RedisTransport.connect(
            redis_url, prefix=prefix, claim_idle=CLAIM_IDLE
        )
        try:
            yield transport
        finally:
            await transport.close()
            await delete_redis_keys(f"{prefix}:*")

    @pytest.fixture
    async def client(self, redis_url: str) -> AsyncIterator[Redis]:
        from redis.asyncio import Redis  # noqa: PLC0415 - an optional extra

        client = Redis.from_url(redis_url)
        yield client
        await client.aclose()

    async def test_entries_hold_the_body_and_the_envelope_id(
        self, transport: RedisTransport, queue: str, client: Redis
    ) -> None:
        sent = command(1)
        await transport.publish(queue, sent)
        await transport.publish_raw(queue, b"raw")
        entries = await client.xrange(transport.stream_key(queue))
        assert [fields for _id, fields in entries] == [
            {b"body": sent.model_dump_json().encode(), b"id": sent.id.encode()},
            {b"body": b"raw"},
        ]
        groups = await client.xinfo_groups(transport.stream_key(queue))
        assert [g["name"] for g in groups] == [transport.group.encode()]

    async def test_acknowledged_entries_are_deleted(
        self, transport: RedisTransport, queue: str, client: Redis
    ) -> None:
        recorder = Recorder(3)
        await transport.consume(queue, recorder)
        for n in range(3):
            await transport.publish(queue, command(n))
        await recorder.wait()
        await settled(client, transport.stream_key(queue))

    async def test_acknowledged_entries_can_be_kept(
        self, redis_url: str, queue: str, client: Redis
    ) -> None:
        redis = pytest.importorskip("sagakit.adapters.transport.redis")
        prefix = f"sagakit-test-{uuid.uuid4().hex[:12]}"
        transport = await redis.RedisTransport.connect(
            redis_url, prefix=prefix, delete_acked=False
        )
        try:
            recorder = Recorder()
            await transport.consume(queue, recorder)
            await transport.publish(queue, command(1))
            await recorder.wait()
            await settled(client, transport.stream_key(queue), kept=1)
        finally:
            await transport.close()
            await delete_redis_keys(f"{prefix}:*")

    async def test_dead_letters_keep_the_reason_in_fields(
        self, transport: RedisTransport, queue: str, client: Redis
    ) -> None:
        await transport.consume(queue, Recorder())
        await transport.publish_raw(queue, b"[1]")
        dead = await eventually(lambda: transport.dead_letters(queue))
        [(_id, fields)] = await client.xrange(transport.dead_letter_key(queue))
        assert fields[b"body"] == b"[1]"
        assert fields[b"reason"].decode() == dead[0].reason
        assert float(fields[b"dead_at"]) == dead[0].dead_at
        assert fields[b"queue"] == queue.encode()
        assert fields[b"deliveries"] == b"1"
        key = transport.stream_key(queue)
        assert await client.xlen(key) == 0
        assert (await client.xpending(key, "sagakit"))["pending"] == 0

    async def test_an_entry_without_a_body_is_dead_lettered(
        self, transport: RedisTransport, queue: str, client: Redis
    ) -> None:
        await transport.consume(queue, Recorder())
        await client.xadd(transport.stream_key(queue), {"other": "x"})
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert [(d.body, d.reason) for d in dead] == [(b"", "entry has no body field")]

    async def test_the_entries_of_a_dead_consumer_are_claimed(
        self, transport: RedisTransport, queue: str, client: Redis
    ) -> None:
        sent = command(1)
        await transport.publish(queue, sent)
        key = transport.stream_key(queue)
        taken = await client.xreadgroup("sagakit", "dead", {key: ">"}, count=1)
        assert len(taken[0][1]) == 1  # then this consumer "dies"
        recorder = Recorder()
        await transport.consume(queue, recorder)
        await recorder.wait()
        assert recorder.handled == [sent]

    async def test_an_entry_delivered_too_often_is_dead_lettered_unhandled(
        self, transport: RedisTransport, queue: str, client: Redis
    ) -> None:
        sent = command(1)
        await transport.publish(queue, sent)
        key = transport.stream_key(queue)
        taken = await client.xreadgroup("sagakit", "dead", {key: ">"}, count=1)
        entry_id = taken[0][1][0][0]
        for _ in range(2):  # two more consumers took it and died
            await client.xclaim(key, "sagakit", "dead", 0, [entry_id])
        recorder = Recorder()
        await transport.consume(queue, recorder, max_deliveries=3)
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert [(decode(d.body), d.reason) for d in dead] == [
            (sent, "not acknowledged after 3 deliveries")
        ]
        assert recorder.calls == []

    async def test_a_slow_handler_keeps_its_message(
        self, transport: RedisTransport, queue: str
    ) -> None:
        calls: list[str] = []
        done = asyncio.Event()

        async def slow(message: Envelope) -> None:
            calls.append(message.id)
            await asyncio.sleep(CLAIM_IDLE * 4)
            done.set()

        await transport.consume(queue, slow, prefetch=1)
        await transport.consume(queue, slow, prefetch=1)
        await transport.publish(queue, command(1))
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(CLAIM_IDLE * 2)
        assert len(calls) == 1

    async def test_cancel_removes_an_idle_consumer_from_the_group(
        self, transport: RedisTransport, queue: str, client: Redis
    ) -> None:
        recorder = Recorder()
        subscription = await transport.consume(queue, recorder)
        await transport.publish(queue, command(1))
        await recorder.wait()
        key = transport.stream_key(queue)
        consumers = await client.xinfo_consumers(key, "sagakit")
        assert [c["name"] for c in consumers] == [subscription.consumer.encode()]
        await settled(client, key)
        await subscription.cancel()
        assert await client.xinfo_consumers(key, "sagakit") == []

    async def test_more_concurrent_commands_than_connections_wait_their_turn(
        self, redis_url: str, queue: str
    ) -> None:
        redis = pytest.importorskip("sagakit.adapters.transport.redis")
        prefix = f"sagakit-test-{uuid.uuid4().hex[:12]}"
        transport = await redis.RedisTransport.connect(
            redis_url, prefix=prefix, max_connections=4, claim_idle=CLAIM_IDLE
        )
        try:
            sent = [command(n) for n in range(100)]
            recorder = Recorder(len(sent))
            await transport.consume(queue, recorder, prefetch=16)
            await asyncio.gather(*(transport.publish(queue, m) for m in sent))
            await recorder.wait()
        finally:
            await transport.close()
            await delete_redis_keys(f"{prefix}:*")

    async def test_a_deleted_stream_is_recreated(
        self, transport: RedisTransport, queue: str, client: Redis
    ) -> None:
        first = Recorder()
        await transport.consume(queue, first)
        await client.delete(transport.stream_key(queue))
        await transport.publish(queue, command(1))
        await first.wait()


async def test_connecting_to_a_closed_redis_port_is_a_transport_error() -> None:
    redis = pytest.importorskip("sagakit.adapters.transport.redis")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://:secret@127.0.0.1:{port}/0"
    with pytest.raises(TransportError) as caught:
        await redis.RedisTransport.connect(url, connect_timeout=5)
    message = str(caught.value)
    assert message == f"cannot connect to Redis at 127.0.0.1:{port}: connection refused"
    assert "secret" not in message
    assert caught.value.__cause__ is not None
