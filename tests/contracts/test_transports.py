"""The transport contract against every adapter (brokers when they are reachable)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.errors import TransportError
from sagakit.messaging.codec import CodecTransport, FieldEncryptionCodec
from sagakit.messaging.envelope import Envelope, decode, encode
from sagakit.ports.transport import Transport
from sagakit.testing.contracts.transport import (
    Recorder,
    TransportContract,
    command,
    eventually,
)
from tests.conftest import delete_rabbitmq_queues, delete_redis_keys

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from sagakit.adapters.transport.celery import CeleryTransport
    from sagakit.adapters.transport.celery_redis import CeleryRedisTransport
    from sagakit.adapters.transport.nats import NatsTransport
    from sagakit.adapters.transport.rabbitmq import RabbitTransport
    from sagakit.adapters.transport.redis import RedisTransport


class TestInProcessTransport(TransportContract):
    @pytest.fixture
    async def transport(self) -> AsyncIterator[Transport]:
        transport = InProcessTransport()
        yield transport
        await transport.close()


class TestCodecTransport(TransportContract):
    """``CodecTransport`` around the in-process transport, encrypting fields
    the contract's messages carry (``total``) and one they do not."""

    @pytest.fixture
    async def transport(self) -> AsyncIterator[Transport]:
        fernet = pytest.importorskip("cryptography.fernet")
        codec = FieldEncryptionCodec(fernet.Fernet.generate_key(), ["total", "card"])
        transport = CodecTransport(InProcessTransport(), codec)
        yield transport
        await transport.close()

    def dead_envelope(self, transport: Transport, body: bytes) -> Envelope:
        """Dead letters keep the encrypted fields as they travelled."""
        assert isinstance(transport, CodecTransport)
        travelled = decode(body)
        assert (
            travelled.payload["total"]
            != transport.codec.decode(travelled).payload["total"]
        )
        return transport.codec.decode(travelled)


@pytest.mark.nats
class TestNatsTransport(TransportContract):
    """Each test gets its own stream prefix; its streams are deleted afterwards."""

    @pytest.fixture
    async def transport(self, nats_transport: NatsTransport) -> NatsTransport:
        return nats_transport


@pytest.mark.rabbitmq
class TestRabbitTransport(TransportContract):
    """Each test gets its own queue prefix; its queues are deleted afterwards."""

    @pytest.fixture
    async def transport(self, rabbit_transport: RabbitTransport) -> RabbitTransport:
        return rabbit_transport

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


JSON = "application/json"

NOT_JSON: list[tuple[str | None, str]] = [
    ("application/x-python-serialize", "(pickle) refused"),
    ("application/x-yaml", "refused"),
    (None, "content type missing refused"),
]
"""Content types of task messages that are dead-lettered unread, and the reason."""

NOT_ENVELOPES: list[tuple[object, dict[str, str], str]] = [
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
]
"""JSON task messages (body, headers) that carry no envelope, and the reason."""
NOT_ENVELOPE_IDS = ["int-argument", "no-argument", "protocol-v1", "wrong-task", "gzip"]


async def still_consuming(transport: Transport, queue: str, recorder: Recorder) -> None:
    """The consumer of ``queue`` (``recorder``, which saw nothing yet) still runs."""
    after = command(3)
    await transport.publish(queue, after)
    await recorder.wait()
    assert recorder.calls == [after]


Stored = tuple[str | None, dict[str, Any], bytes]
"""A message as the broker holds it: content type, headers and (decoded) body."""
Peek = Callable[[str], Awaitable[list[Stored]]]
"""The messages on a broker queue, oldest first, left in place."""

Inject = Callable[[str, bytes, dict[str, Any], str | None], Awaitable[None]]
"""Put a message on a queue as some other Celery client would: the queue, the
body, the headers and the content type."""


class CeleryWireContract(TransportContract):
    """Task messages other Celery clients send; subclasses provide ``inject``."""

    @pytest.fixture
    def inject(self) -> Inject:
        raise NotImplementedError

    @pytest.fixture
    def peek(self) -> Peek:
        raise NotImplementedError

    async def test_messages_are_celery_v2_json_task_messages(
        self, transport: CeleryTransport | CeleryRedisTransport, queue: str, peek: Peek
    ) -> None:
        sent = command(1)
        reply = sent.reply(ok=True, payload={"ticket": 9})
        failed = sent.reply(ok=False, error={"type": "Full"})
        for message in (sent, reply, failed):
            await transport.publish(queue, message)
        found = await peek(transport.queue_name(queue))
        tasks = []
        for (content_type, headers, body), message in zip(
            found, (sent, reply, failed), strict=True
        ):
            assert content_type == JSON
            assert headers["lang"] == "py"
            assert headers["id"] == message.id
            args, kwargs, embed = json.loads(body)
            assert args == [message.model_dump(mode="json")]
            assert kwargs == {}
            assert set(embed) == {"callbacks", "errbacks", "chain", "chord"}
            tasks.append(headers["task"])
        assert tasks == [
            "kitchen.create_ticket",
            "kitchen.create_ticket.response.success",
            "kitchen.create_ticket.response.failure",
        ]

    async def test_dead_letters_keep_the_task_message_as_it_came(
        self, transport: CeleryTransport | CeleryRedisTransport, queue: str, peek: Peek
    ) -> None:
        poison = command(5)
        await transport.consume(
            queue, Recorder(fail=lambda _m, _a: True), max_deliveries=2
        )
        await transport.publish(queue, poison)
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert decode(dead[0].body) == poison
        [(_type, headers, body)] = await peek(f"{transport.queue_name(queue)}.dlq")
        assert headers["task"] == "kitchen.create_ticket"
        assert headers["id"] == poison.id
        assert headers["x-sagakit-deliveries"] == 1
        assert headers["x-sagakit-reason"] == dead[0].reason
        assert headers["x-sagakit-dead-at"] == dead[0].dead_at
        assert headers["x-sagakit-queue"] == queue
        assert json.loads(body)[0] == [poison.model_dump(mode="json")]

    @pytest.mark.parametrize(("content_type", "expected"), NOT_JSON)
    async def test_non_json_task_messages_are_dead_lettered_unread(
        self,
        transport: Transport,
        queue: str,
        inject: Inject,
        content_type: str | None,
        expected: str,
    ) -> None:
        body = b"\x80\x04\x95 not really a pickle"
        await transport.consume(queue, Recorder())
        headers = {"task": "kitchen.create_ticket", "id": "x"}
        await inject(queue, body, headers, content_type)
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert [d.body for d in dead] == [body]
        assert expected in dead[0].reason
        assert "never unpickles" in dead[0].reason

    @pytest.mark.parametrize("case", NOT_ENVELOPES, ids=NOT_ENVELOPE_IDS)
    async def test_task_messages_without_an_envelope_are_dead_lettered(
        self,
        transport: Transport,
        queue: str,
        inject: Inject,
        case: tuple[object, dict[str, str], str],
    ) -> None:
        body, headers, expected = case
        recorder = Recorder()
        await transport.consume(queue, recorder)
        await inject(queue, json.dumps(body).encode(), dict(headers), JSON)
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert expected in dead[0].reason
        await still_consuming(transport, queue, recorder)

    async def test_a_bare_envelope_is_accepted(
        self, transport: Transport, queue: str, inject: Inject
    ) -> None:
        """What ``RabbitTransport`` sends: JSON envelope bytes, no task headers."""
        sent = command(4)
        recorder = Recorder()
        await transport.consume(queue, recorder)
        await inject(queue, encode(sent), {}, JSON)
        await recorder.wait()
        assert recorder.handled == [sent]


@pytest.mark.celery
@pytest.mark.rabbitmq
class TestCeleryTransport(CeleryWireContract):
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

    @pytest.fixture
    def inject(self, rabbitmq_url: str) -> Inject:
        import aio_pika  # noqa: PLC0415 - the driver is an optional extra

        async def inject(
            queue: str, body: bytes, headers: dict[str, Any], content_type: str | None
        ) -> None:
            connection = await aio_pika.connect(rabbitmq_url)
            async with connection:
                channel = await connection.channel()
                message = aio_pika.Message(
                    body, content_type=content_type, headers=headers
                )
                await channel.default_exchange.publish(message, routing_key=queue)

        return inject

    @pytest.fixture
    def peek(self, rabbitmq_url: str) -> Peek:
        import aio_pika  # noqa: PLC0415 - the driver is an optional extra

        async def peek(name: str) -> list[Stored]:
            connection = await aio_pika.connect(rabbitmq_url)
            async with connection:
                channel = await connection.channel()
                declared = await channel.declare_queue(name, durable=True)
                found, last = [], None
                while incoming := await declared.get(no_ack=False, fail=False):
                    found.append(
                        (incoming.content_type, dict(incoming.headers), incoming.body)
                    )
                    last = incoming
                if last is not None:  # all back, in place
                    await last.nack(multiple=True, requeue=True)
            return found

        return peek

    async def test_task_messages_are_persistent_with_the_task_id_as_correlation(
        self, transport: CeleryTransport, queue: str, rabbitmq_url: str
    ) -> None:
        import aio_pika  # noqa: PLC0415 - the driver is an optional extra

        sent = command(1)
        await transport.publish(queue, sent)
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, durable=True)
            incoming = await declared.get(no_ack=True)
            assert incoming.content_encoding == "utf-8"
            assert incoming.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert incoming.correlation_id == sent.id

    async def test_only_amqp_broker_urls_are_accepted(self) -> None:
        celery = pytest.importorskip("sagakit.adapters.transport.celery")
        with pytest.raises(TransportError, match="AMQP"):
            await celery.CeleryTransport.connect("redis://127.0.0.1:6379/0")


CLAIM_IDLE = 0.2
"""Seconds before a Redis entry left pending is claimed again (short for tests)."""


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    """A plain Redis client, to look at (or tamper with) what a transport stored."""
    from redis.asyncio import Redis  # noqa: PLC0415 - an optional extra

    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def settled(client: Redis, key: str, *, kept: int = 0) -> None:
    """Wait until nothing in ``key`` is pending and ``kept`` entries remain."""
    async with asyncio.timeout(5):
        while (await client.xpending(key, "sagakit"))["pending"] or (  # noqa: ASYNC110 - no event for it
            await client.xlen(key) != kept
        ):
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def redis_transport(url: str, **options: Any) -> AsyncIterator[RedisTransport]:
    """A transport whose keys are this test's own (one key prefix), deleted
    afterwards on the single server (the session's cluster goes away whole)."""
    redis = pytest.importorskip("sagakit.adapters.transport.redis")
    prefix = f"sagakit-test-{uuid.uuid4().hex[:12]}"
    transport = await redis.RedisTransport.connect(url, prefix=prefix, **options)
    try:
        yield transport
    finally:
        await transport.close()
        if not transport.cluster:
            await delete_redis_keys(f"{prefix}:*")


@pytest.mark.redis
class TestRedisTransport(TransportContract):
    """Each test gets its own key prefix. ``url`` is the server (or cluster)
    and ``client`` a plain client of it, to look at what a transport stored."""

    @pytest.fixture
    def url(self, redis_url: str) -> str:
        return redis_url

    @pytest.fixture
    async def transport(self, url: str) -> AsyncIterator[RedisTransport]:
        async with redis_transport(url, claim_idle=CLAIM_IDLE) as transport:
            yield transport

    async def test_entries_hold_the_body_and_the_envelope_id(
        self, transport: RedisTransport, queue: str, client: Redis
    ) -> None:
        sent = command(1)
        await transport.publish(queue, sent)
        await transport.publish_raw(queue, b"raw")
        key = transport.stream_key(queue)
        assert key == f"{transport.prefix}:{{{queue}}}"
        entries = await client.xrange(key)
        assert [fields for _id, fields in entries] == [
            {b"body": sent.model_dump_json().encode(), b"id": sent.id.encode()},
            {b"body": b"raw"},
        ]
        groups = await client.xinfo_groups(key)
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

    async def test_an_idle_consumer_outlasts_the_socket_timeout(
        self, url: str, queue: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Regression: with the default claim interval (7.5 s) a read blocked
        longer than redis-py's 5 s socket timeout, failed, and the loop paused
        7.5 s more before reading again."""
        async with redis_transport(url) as transport:
            recorder = Recorder()
            await transport.consume(queue, recorder)
            await asyncio.sleep(5.5)  # idle past the socket timeout
            await transport.publish(queue, command(1))
            await recorder.wait()
            failures = [r for r in caplog.records if "failed" in r.getMessage()]
            assert failures == []

    async def test_acknowledged_entries_can_be_kept(
        self, url: str, queue: str, client: Redis
    ) -> None:
        async with redis_transport(url, delete_acked=False) as transport:
            recorder = Recorder()
            await transport.consume(queue, recorder)
            await transport.publish(queue, command(1))
            await recorder.wait()
            await settled(client, transport.stream_key(queue), kept=1)

    async def test_dead_letters_keep_the_reason_in_fields(
        self, transport: RedisTransport, queue: str, client: Redis
    ) -> None:
        await transport.consume(queue, Recorder())
        await transport.publish_raw(queue, b"[1]")
        dead = await eventually(lambda: transport.dead_letters(queue))
        dlq = transport.dead_letter_key(queue)
        assert dlq == f"{transport.prefix}:{{{queue}}}:dlq"
        [(_id, fields)] = await client.xrange(dlq)
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
        self, url: str, queue: str
    ) -> None:
        options = {"max_connections": 4, "claim_idle": CLAIM_IDLE}
        async with redis_transport(url, **options) as transport:
            sent = [command(n) for n in range(100)]
            recorder = Recorder(len(sent))
            await transport.consume(queue, recorder, prefetch=16)
            await asyncio.gather(*(transport.publish(queue, m) for m in sent))
            await recorder.wait()

    async def test_a_deleted_stream_is_recreated(
        self, transport: RedisTransport, queue: str, client: Redis
    ) -> None:
        first = Recorder()
        await transport.consume(queue, first)
        await client.delete(transport.stream_key(queue))
        await transport.publish(queue, command(1))
        await first.wait()


QUEUES_OVER_SLOTS = 20
"""Queues in the test that spreads queues over the cluster's nodes."""


@pytest.mark.redis
class TestRedisClusterTransport(TestRedisTransport):
    """Every test above, on a 3-master Redis Cluster started for the session."""

    @pytest.fixture
    def url(self, redis_cluster_url: str) -> str:
        return redis_cluster_url

    @pytest.fixture
    async def client(self, redis_cluster_url: str) -> AsyncIterator[RedisCluster]:
        from redis.asyncio.cluster import RedisCluster  # noqa: PLC0415 - an extra

        address = redis_cluster_url.partition("://")[2]
        client = await RedisCluster.from_url(f"redis://{address}").initialize()
        yield client
        await client.aclose()

    async def test_a_queue_and_its_dead_letters_share_a_slot(
        self, transport: RedisTransport, client: RedisCluster
    ) -> None:
        for queue in ["q", "a{b", "a}b", "{x}", "kitchen.replies", "ü"]:
            keys = (transport.stream_key(queue), transport.dead_letter_key(queue))
            slots = {await client.cluster_keyslot(key) for key in keys}  # the server's
            assert len(slots) == 1, queue

    async def test_queues_spread_over_the_nodes_all_work(
        self, transport: RedisTransport, client: RedisCluster
    ) -> None:
        """Each queue dead-letters one message and handles another, then
        replays the dead one: every pipeline on one queue's node."""
        queues = [f"spread-{n}" for n in range(QUEUES_OVER_SLOTS)]
        keys = [transport.stream_key(queue) for queue in queues]
        assert len({client.keyslot(key) for key in keys}) == QUEUES_OVER_SLOTS
        assert len({client.get_node_from_key(key).name for key in keys}) == 3

        broken = {"now": True}
        recorders = {}
        for queue in queues:
            recorders[queue] = Recorder(
                2, fail=lambda m, _a: broken["now"] and m.type == "kitchen.poison"
            )
            await transport.consume(queue, recorders[queue], max_deliveries=1)
        poison = {q: command(n, type_="kitchen.poison") for n, q in enumerate(queues)}
        for n, queue in enumerate(queues):
            await transport.publish(queue, command(n))
            await transport.publish(queue, poison[queue])
        for queue in queues:
            dead = await eventually(lambda q=queue: transport.dead_letters(q))
            assert [decode(d.body) for d in dead] == [poison[queue]]
        broken["now"] = False
        for queue in queues:
            assert await transport.replay_dead_letters(queue) == 1
        for queue in queues:
            await recorders[queue].wait()
            assert await transport.dead_letters(queue) == []

    @pytest.mark.parametrize("queue", ["", "}x"])
    async def test_queue_names_without_a_hash_tag_are_refused(
        self, transport: RedisTransport, queue: str
    ) -> None:
        with pytest.raises(TransportError, match="cannot be used on Redis Cluster"):
            await transport.publish(queue, command(1))

    async def test_a_prefix_with_braces_is_refused(self, url: str) -> None:
        redis = pytest.importorskip("sagakit.adapters.transport.redis")
        with pytest.raises(TransportError, match="may not hold"):
            await redis.RedisTransport.connect(url, prefix="app{1}")

    async def test_open_transport_picks_it_for_cluster_urls(self, url: str) -> None:
        from sagakit.adapters.transport import open_transport  # noqa: PLC0415
        from sagakit.adapters.transport.redis import RedisTransport  # noqa: PLC0415

        transport = await open_transport(url)
        try:
            assert isinstance(transport, RedisTransport)
            assert transport.cluster
        finally:
            await transport.close()

    async def test_a_plain_url_with_cluster_true_connects_too(self, url: str) -> None:
        redis = pytest.importorskip("sagakit.adapters.transport.redis")
        plain = f"redis://{url.partition('://')[2]}"
        transport = await redis.RedisTransport.connect(plain, cluster=True)
        try:
            assert transport.cluster
        finally:
            await transport.close()

    async def test_a_single_server_is_not_a_cluster(self, redis_url: str) -> None:
        redis = pytest.importorskip("sagakit.adapters.transport.redis")
        with pytest.raises(TransportError) as caught:
            await redis.RedisTransport.connect(redis_url, cluster=True)
        where = urlsplit(redis_url).netloc.rpartition("@")[2]
        assert str(caught.value) == (
            f"cannot connect to Redis Cluster at {where}: "
            "Cluster mode is not enabled on this node"
        )

    async def test_a_database_number_is_refused(self, url: str) -> None:
        redis = pytest.importorskip("sagakit.adapters.transport.redis")
        with pytest.raises(TransportError, match="invalid Redis Cluster URL for"):
            await redis.RedisTransport.connect(f"{url}/1")

    async def test_a_redis_py_without_cluster_transactions_is_refused(
        self, url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        redis = pytest.importorskip("sagakit.adapters.transport.redis")
        from redis.asyncio.cluster import RedisCluster  # noqa: PLC0415 - an extra
        from redis.exceptions import RedisClusterException  # noqa: PLC0415

        def refuse(*_args: object, **_kwargs: object) -> None:
            raise RedisClusterException("transaction is deprecated in cluster mode")

        monkeypatch.setattr(RedisCluster, "pipeline", refuse)
        with pytest.raises(TransportError, match="pip install -U redis"):
            await redis.RedisTransport.connect(url)


# --- Celery on Redis -----------------------------------------------------------

VISIBILITY = 5.0
"""Seconds a taken message stays invisible to other consumers (tests' default)."""


@contextlib.asynccontextmanager
async def celery_redis(
    redis_url: str, **options: Any
) -> AsyncIterator[CeleryRedisTransport]:
    """A transport whose lists and ``unacked`` keys are this test's own (one key
    prefix), all deleted afterwards."""
    module = pytest.importorskip("sagakit.adapters.transport.celery_redis")
    prefix = f"sagakit-test-{uuid.uuid4().hex[:12]}"
    transport = await module.CeleryRedisTransport.connect(
        redis_url,
        prefix=prefix,
        unacked_key=f"{prefix}.unacked",
        unacked_index_key=f"{prefix}.unacked_index",
        **{"visibility_timeout": VISIBILITY, **options},
    )
    try:
        yield transport
    finally:
        await transport.close()
        await delete_redis_keys(f"{prefix}*")


async def push(
    client: Redis,
    transport: CeleryRedisTransport,
    queue: str,
    body: bytes,
    headers: dict[str, Any],
    *,
    content_type: str | None = "application/json",
    priority: int = 0,
) -> dict[str, Any]:
    """LPUSH a kombu message to ``queue`` as a Celery client would; returns it."""
    name = transport.queue_name(queue)
    message = transport.kombu_message(name, body, headers)
    message["content-type"] = content_type
    message["properties"]["priority"] = priority
    await client.lpush(transport.list_key(name, priority), json.dumps(message))
    return message


async def take_and_die(
    client: Redis, transport: CeleryRedisTransport, queue: str
) -> str:
    """Take the oldest message of ``queue`` as a kombu consumer does (``unacked``
    hash and index), then never acknowledge it; returns its delivery tag."""
    name = transport.queue_name(queue)
    item = await client.rpop(name)
    assert item is not None
    tag = json.loads(item)["properties"]["delivery_tag"]
    entry = json.dumps([json.loads(item), "", name])
    await client.hset(transport.unacked_key, tag, entry)
    await client.zadd(transport.unacked_index_key, {tag: time.time()})
    return str(tag)


@pytest.mark.celery
@pytest.mark.redis
class TestCeleryRedisTransport(CeleryWireContract):
    """Celery task messages in kombu's Redis layout."""

    @pytest.fixture
    async def transport(self, redis_url: str) -> AsyncIterator[CeleryRedisTransport]:
        async with celery_redis(redis_url) as transport:
            yield transport

    @pytest.fixture
    def inject(self, transport: CeleryRedisTransport, client: Redis) -> Inject:
        async def inject(
            queue: str, body: bytes, headers: dict[str, Any], content_type: str | None
        ) -> None:
            await push(
                client, transport, queue, body, headers, content_type=content_type
            )

        return inject

    @pytest.fixture
    def peek(self, client: Redis) -> Peek:
        async def peek(name: str) -> list[Stored]:
            found = []
            for item in reversed(await client.lrange(name, 0, -1)):
                stored = json.loads(item)
                body = base64.b64decode(stored["body"])
                found.append((stored["content-type"], stored["headers"], body))
            return found

        return peek

    async def test_messages_are_stored_as_kombu_stores_them(
        self, transport: CeleryRedisTransport, queue: str, client: Redis
    ) -> None:
        sent = command(1)
        await transport.publish(queue, sent)
        name = transport.queue_name(queue)
        [item] = await client.lrange(name, 0, -1)
        stored = json.loads(item)
        assert stored["content-encoding"] == "utf-8"
        properties = stored["properties"]
        assert properties["delivery_info"] == {"exchange": "", "routing_key": name}
        assert properties["body_encoding"] == "base64"
        assert properties["delivery_mode"] == 2
        assert properties["priority"] == 0
        assert properties["correlation_id"] == sent.id
        assert uuid.UUID(properties["delivery_tag"])
        assert await client.hlen(transport.unacked_key) == 0

    @pytest.mark.parametrize(
        ("item", "expected"),
        [
            (b"\x00\xffnot json", "not a kombu message"),
            (b"[1, 2]", "not a kombu message: no properties object"),
            (b'{"body": 5, "properties": {}}', "body is int"),
            (
                b'{"body": "!!", "properties": {"body_encoding": "base64"}}',
                "undecodable body",
            ),
            (
                b'{"body": "e30=", "properties": {"body_encoding": "rot13"}}',
                "body encoding 'rot13' is not supported",
            ),
            (
                b'{"body": "e30=", "properties": {"body_encoding": "base64"}}',
                "kombu message without a delivery tag",
            ),
        ],
        ids=["not-json", "array", "int-body", "bad-base64", "rot13", "no-tag"],
    )
    async def test_items_that_are_not_kombu_messages_are_dead_lettered(
        self,
        transport: CeleryRedisTransport,
        queue: str,
        client: Redis,
        item: bytes,
        expected: str,
    ) -> None:
        recorder = Recorder()
        await transport.consume(queue, recorder)
        await client.lpush(transport.queue_name(queue), item)
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert expected in dead[0].reason
        if expected != "kombu message without a delivery tag":
            assert dead[0].body == item  # kept as it came
        await still_consuming(transport, queue, recorder)

    async def test_messages_being_handled_are_kept_in_unacked_as_kombu_does(
        self, transport: CeleryRedisTransport, queue: str, client: Redis
    ) -> None:
        started = asyncio.Event()

        async def stuck(_message: Envelope) -> None:
            started.set()
            await asyncio.Event().wait()

        subscription = await transport.consume(queue, stuck)
        await transport.publish(queue, command(1))
        await asyncio.wait_for(started.wait(), 5)
        name = transport.queue_name(queue)
        [(tag, entry)] = (await client.hgetall(transport.unacked_key)).items()
        message, exchange, routing_key = json.loads(entry)
        assert (exchange, routing_key) == ("", name)
        assert message["properties"]["delivery_tag"] == tag.decode()
        taken_at = await client.zscore(transport.unacked_index_key, tag)
        assert taken_at is not None
        assert abs(taken_at - time.time()) < 5

        await subscription.cancel()  # restored at once, counted, kombu-style
        assert await client.hlen(transport.unacked_key) == 0
        assert await client.zcard(transport.unacked_index_key) == 0
        [item] = await client.lrange(name, 0, -1)
        restored = json.loads(item)
        assert restored["headers"]["redelivered"] is True
        assert restored["headers"]["x-sagakit-deliveries"] == 1
        assert restored["properties"]["delivery_info"]["redelivered"] is True
        assert restored["body"] == message["body"]

    async def test_the_message_of_a_dead_consumer_is_restored(
        self, redis_url: str, queue: str, client: Redis
    ) -> None:
        async with celery_redis(redis_url, visibility_timeout=0.3) as transport:
            sent = command(1)
            await transport.publish(queue, sent)
            await take_and_die(client, transport, queue)
            recorder = Recorder()
            await transport.consume(queue, recorder)
            await recorder.wait()
            assert recorder.handled == [sent]
            async with asyncio.timeout(5):
                while await client.hlen(transport.unacked_key):  # noqa: ASYNC110 - no event for it
                    await asyncio.sleep(0.02)

    async def test_a_message_restored_too_often_is_dead_lettered_unhandled(
        self, transport: CeleryRedisTransport, queue: str, client: Redis
    ) -> None:
        sent = command(1)
        await transport.publish(queue, sent)
        for _ in range(3):  # three consumers took it and died; a sweep restored it
            await transport.restore(await take_and_die(client, transport, queue))
        recorder = Recorder()
        await transport.consume(queue, recorder, max_deliveries=3)
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert [(decode(d.body), d.reason) for d in dead] == [
            (sent, "not acknowledged after 3 deliveries")
        ]
        assert recorder.calls == []

    async def test_a_kombu_sweep_restores_a_message_we_hold_once(
        self, transport: CeleryRedisTransport, queue: str, client: Redis, redis_url: str
    ) -> None:
        """What a Celery worker's ``restore_visible`` does to our ``unacked``
        entries: the message goes back to our queue, and our own restore on
        ``cancel`` then finds nothing to push again."""
        from kombu import Connection  # noqa: PLC0415 - an optional extra

        started = asyncio.Event()

        async def stuck(_message: Envelope) -> None:
            started.set()
            await asyncio.Event().wait()

        subscription = await transport.consume(queue, stuck)
        await transport.publish(queue, command(1))
        await asyncio.wait_for(started.wait(), 5)

        def sweep() -> None:
            options = {
                "unacked_key": transport.unacked_key,
                "unacked_index_key": transport.unacked_index_key,
                "unacked_mutex_key": f"{transport.prefix}.unacked_mutex",
                "visibility_timeout": 0,
            }
            with Connection(redis_url, transport_options=options) as connection:
                connection.default_channel.qos.restore_visible(num=100, interval=1)

        await asyncio.to_thread(sweep)
        await subscription.cancel()
        name = transport.queue_name(queue)
        [item] = await client.lrange(name, 0, -1)
        assert json.loads(item)["headers"]["redelivered"] is True
        recorder = Recorder()
        await transport.consume(queue, recorder)
        await recorder.wait()

    async def test_a_slow_handler_keeps_its_message(
        self, redis_url: str, queue: str
    ) -> None:
        calls: list[str] = []
        done = asyncio.Event()

        async def slow(message: Envelope) -> None:
            calls.append(message.id)
            await asyncio.sleep(0.9)
            done.set()

        options = {"visibility_timeout": 0.3, "restore_interval": 0.05}
        async with celery_redis(redis_url, **options) as transport:
            await transport.consume(queue, slow, prefetch=1)
            await transport.consume(queue, slow, prefetch=1)
            await transport.publish(queue, command(1))
            await asyncio.wait_for(done.wait(), 5)
            await asyncio.sleep(0.3)
        assert len(calls) == 1

    async def test_priority_lists_are_read(
        self, transport: CeleryRedisTransport, queue: str, client: Redis
    ) -> None:
        """kombu's lists ``q\x06\x163`` and so on, read after ``q`` itself."""
        later, first = command(1), command(2)
        name = transport.queue_name(queue)
        assert transport.list_key(name, 5) == f"{name}\x06\x163"
        for message, priority in ((later, 5), (first, 0)):
            task = transport.task_message(name, message)
            body = base64.b64decode(task["body"])
            await push(
                client, transport, queue, body, task["headers"], priority=priority
            )
        recorder = Recorder(2)
        await transport.consume(queue, recorder, prefetch=1)
        await recorder.wait()
        assert recorder.handled == [first, later]

    async def test_open_transport_picks_it_for_celery_redis_urls(
        self, redis_url: str
    ) -> None:
        from sagakit.adapters.transport import open_transport  # noqa: PLC0415
        from sagakit.adapters.transport.celery_redis import (  # noqa: PLC0415
            CeleryRedisTransport,
        )

        transport = await open_transport(f"celery+{redis_url}")
        try:
            assert isinstance(transport, CeleryRedisTransport)
        finally:
            await transport.close()

    async def test_only_redis_broker_urls_are_accepted(self) -> None:
        module = pytest.importorskip("sagakit.adapters.transport.celery_redis")
        with pytest.raises(TransportError, match="Redis only"):
            await module.CeleryRedisTransport.connect("amqp://127.0.0.1:5672//")


CLOSED_PORT = [
    pytest.param(
        "rabbitmq.RabbitTransport",
        "amqp://guest:secret@127.0.0.1:{port}/",
        "cannot connect to RabbitMQ at 127.0.0.1:{port}: connection refused",
        OSError,
        id="rabbitmq",
    ),
    pytest.param(
        "celery.CeleryTransport",
        "pyamqp://guest:secret@127.0.0.1:{port}//",
        "cannot connect to the Celery broker at 127.0.0.1:{port}: connection refused",
        OSError,
        id="celery",
    ),
    pytest.param(
        "redis.RedisTransport",
        "redis://:secret@127.0.0.1:{port}/0",
        "cannot connect to Redis at 127.0.0.1:{port}: connection refused",
        Exception,
        id="redis",
    ),
    pytest.param(
        "redis.RedisTransport",
        "redis+cluster://:secret@127.0.0.1:{port}",
        "cannot connect to Redis Cluster at 127.0.0.1:{port}: connection refused",
        Exception,
        id="redis-cluster",
    ),
    pytest.param(
        "celery_redis.CeleryRedisTransport",
        "redis://:secret@127.0.0.1:{port}/0",
        "Redis: connecting to the Celery broker at 127.0.0.1:{port} failed: "
        "connection refused",
        Exception,
        id="celery-redis",
    ),
]
"""Adapter, URL, error message (no password in it) and the driver's error type."""


@pytest.mark.parametrize(("adapter", "url", "expected", "cause"), CLOSED_PORT)
async def test_connecting_to_a_closed_port_is_a_transport_error(
    adapter: str, url: str, expected: str, cause: type[Exception]
) -> None:
    module, name = adapter.split(".")
    transports = pytest.importorskip(f"sagakit.adapters.transport.{module}")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransportError) as caught:
        await getattr(transports, name).connect(
            url.format(port=port), connect_timeout=5
        )
    assert str(caught.value) == expected.format(port=port)
    assert isinstance(caught.value.__cause__, cause)


NO_AIO_PIKA = """
import sys
sys.modules["aio_pika"] = None  # any import of it raises ImportError
from redis.asyncio import Redis
from sagakit.adapters.transport.celery_redis import CeleryRedisTransport
CeleryRedisTransport(Redis())
assert sys.modules["aio_pika"] is None
"""


def test_celery_on_redis_needs_no_amqp_driver() -> None:
    """Importing and constructing ``CeleryRedisTransport`` works without
    aio-pika (the RabbitMQ driver) being importable."""
    pytest.importorskip("sagakit.adapters.transport.celery_redis")
    done = subprocess.run(
        [sys.executable, "-c", NO_AIO_PIKA],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
