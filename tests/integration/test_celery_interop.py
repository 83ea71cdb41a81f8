"""A real Celery worker and sagakit talk in Celery's format, on either broker.

Each test runs once with RabbitMQ (:class:`CeleryTransport`) and once with
Redis (:class:`CeleryRedisTransport`) as the Celery broker. The worker is
``celery worker`` in a subprocess running ``tests/integration/celery_app.py``;
it is stopped (then killed) when the test ends. Every queue name of a test
holds its own random suffix; afterwards its RabbitMQ queues and exchanges, or
its Redis keys and ``unacked`` entries, are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sagakit.testing.contracts.transport import Recorder, command, eventually
from tests.conftest import REDIS_URL, delete_rabbitmq_queues, delete_redis_keys

if TYPE_CHECKING:
    from sagakit.adapters.transport.celery import CeleryTransport
    from sagakit.adapters.transport.celery_redis import CeleryRedisTransport

pytestmark = [pytest.mark.celery, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
WORKER_TIMEOUT = 60.0
"""Seconds for the worker to start, run the task and reply."""


@dataclass(frozen=True)
class Broker:
    """The Celery broker of a test, and the suffix of its queue names."""

    kind: str  # "rabbitmq" or "redis"
    url: str
    suffix: str


@dataclass(frozen=True)
class Kitchen:
    queue: str
    replies: str
    log: Path


async def delete_exchanges(url: str, *names: str) -> None:
    import aio_pika  # noqa: PLC0415 - only these tests need the driver

    connection = await aio_pika.connect(url, timeout=5)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.exchange_delete(name)


def stop(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM (Celery's warm shutdown), then SIGKILL the process group."""
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=15)


async def forget_unacked(suffix: str) -> None:
    """Drop the entries of kombu's ``unacked`` hash (and index) routed to a
    queue whose name holds ``suffix``: the hash is shared by every queue."""
    from redis.asyncio import Redis  # noqa: PLC0415 - only these tests need it

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        entries = await client.hgetall("unacked")
        tags = [tag for tag, entry in entries.items() if suffix.encode() in entry]
        if tags:
            await client.hdel("unacked", *tags)
            await client.zrem("unacked_index", *tags)
    finally:
        await client.aclose()


@pytest.fixture(
    params=[
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """RabbitMQ or Redis (skip, or fail when ``CI=true``, when unreachable)."""
    kind: str = request.param
    url: str = request.getfixturevalue(f"{kind}_url")
    found = Broker(kind, url, uuid.uuid4().hex[:12])
    yield found
    if kind == "redis":
        asyncio.run(delete_redis_keys(f"*{found.suffix}*"))
        asyncio.run(forget_unacked(found.suffix))


@pytest.fixture
def kitchen(broker: Broker, tmp_path: Path) -> Iterator[Kitchen]:
    """A Celery worker consuming a queue of its own."""
    pytest.importorskip("celery")
    suffix = broker.suffix
    found = Kitchen(f"kitchen-{suffix}", f"replies-{suffix}", tmp_path / "worker.log")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "SAGAKIT_TEST_CELERY_BROKER_URL": broker.url,
    }
    command_line = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.integration.celery_app",
        "worker",
        "--pool=solo",
        "--concurrency",
        "1",
        "-Q",
        found.queue,
        "-n",
        f"kitchen-{suffix}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "INFO",
    ]
    with found.log.open("wb") as log:
        worker = subprocess.Popen(
            command_line,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one
        )
    try:
        yield found
    finally:
        stop(worker)
        if broker.kind == "rabbitmq":  # the broker fixture cleans Redis up
            queues = [found.queue, found.replies, f"{found.replies}.dlq"]
            asyncio.run(delete_rabbitmq_queues(*queues))
            asyncio.run(delete_exchanges(broker.url, found.queue, found.replies))


@pytest.fixture
async def transport(
    broker: Broker,
) -> AsyncIterator[CeleryTransport | CeleryRedisTransport]:
    """Ours, on the test's broker."""
    name = "celery_redis" if broker.kind == "redis" else "celery"
    module = pytest.importorskip(f"sagakit.adapters.transport.{name}")
    adapter = (
        module.CeleryRedisTransport
        if name == "celery_redis"
        else module.CeleryTransport
    )
    transport = await adapter.connect(broker.url)
    try:
        yield transport
    finally:
        await transport.close()
        if broker.kind == "rabbitmq":  # the broker fixture cleans Redis up
            await delete_rabbitmq_queues(*sorted(transport.declared_queues))


async def test_a_celery_worker_runs_the_command_and_its_reply_is_consumed(
    kitchen: Kitchen, transport: CeleryTransport | CeleryRedisTransport
) -> None:
    sent = command(1).model_copy(update={"reply_to": kitchen.replies})
    refused = command(2).model_copy(
        update={"reply_to": kitchen.replies, "payload": {"refuse": True}}
    )
    replies = Recorder(2)
    await transport.consume(kitchen.replies, replies)
    await transport.publish(kitchen.queue, sent)
    await transport.publish(kitchen.queue, refused)
    try:
        await asyncio.wait_for(replies.done.wait(), WORKER_TIMEOUT)
    except TimeoutError:
        pytest.fail(f"no reply; worker log:\n{kitchen.log.read_text()[-4000:]}")

    by_saga = {m.saga_id: m for m in replies.handled}
    assert set(by_saga) == {"saga-1", "saga-2"}
    success, failure = by_saga["saga-1"], by_saga["saga-2"]
    assert success.kind == "reply"
    assert success.ok is True
    assert success.type == sent.type
    assert success.correlation_id == sent.correlation_id
    assert success.step == sent.step
    assert success.headers == sent.headers
    assert success.payload["ticket_id"] == "T-saga-1"
    assert success.payload["worker_pid"] != os.getpid()  # run by the worker
    assert failure.ok is False
    assert failure.error == {"type": "KitchenFull", "message": "no room"}
    assert await transport.dead_letters(kitchen.replies) == []
    log = kitchen.log.read_text()
    assert "kitchen.create_ticket" in log
    assert "succeeded" in log


UNPICKLED: list[str] = []


def _tripped() -> str:
    UNPICKLED.append("unpickled!")
    return "tripped"


class Tripwire:
    """Unpickling it records that someone unpickled it."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_tripped, ())


async def send_task(url: str, name: str, args: list[object], **options: Any) -> None:
    """``send_task`` from a Celery client of its own, in a thread (it blocks);
    JSON unless ``serializer`` says otherwise."""
    from celery import Celery  # noqa: PLC0415 - an optional extra

    app = Celery("client", broker=url, set_as_current=False)

    def send() -> None:
        try:
            app.send_task(name, args=args, **{"serializer": "json", **options})
        finally:
            app.close()

    await asyncio.to_thread(send)


async def test_a_celery_clients_task_reaches_our_handler(
    broker: Broker, transport: CeleryTransport | CeleryRedisTransport
) -> None:
    """``send_task`` of a Celery client, with a priority (on Redis: kombu's
    priority list of the queue), to a queue we consume."""
    queue = f"orders-{broker.suffix}"
    sent = command(4)
    recorder = Recorder()
    await transport.consume(queue, recorder)
    try:
        args = [sent.model_dump(mode="json")]
        await send_task(
            broker.url, sent.type, args, task_id=sent.id, queue=queue, priority=5
        )
        await recorder.wait()
        assert recorder.handled == [sent]
    finally:
        if broker.kind == "rabbitmq":
            with contextlib.suppress(Exception):
                await delete_exchanges(broker.url, queue)


async def test_a_pickled_task_message_is_dead_lettered_never_unpickled(
    broker: Broker, transport: CeleryTransport | CeleryRedisTransport
) -> None:
    queue = f"orders-{broker.suffix}"
    recorder = Recorder()
    await transport.consume(queue, recorder)
    try:
        task = "kitchen.create_ticket.response.success"
        await send_task(
            broker.url, task, [Tripwire()], queue=queue, serializer="pickle"
        )
        dead = await eventually(lambda: transport.dead_letters(queue))
        assert len(dead) == 1
        assert "application/x-python-serialize (pickle) refused" in dead[0].reason
        assert dead[0].body.startswith(b"\x80")  # the pickle, kept as bytes
        assert UNPICKLED == []

        after = command(3)
        await transport.publish(queue, after)  # the consumer is still running
        await recorder.wait()
        assert recorder.calls == [after]
        assert UNPICKLED == []
    finally:
        if broker.kind == "rabbitmq":
            with contextlib.suppress(Exception):
                await delete_exchanges(broker.url, queue)
