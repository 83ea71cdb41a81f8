"""A real Celery worker and sagakit talk through RabbitMQ in Celery's format.

The worker is ``celery worker`` in a subprocess running
``tests/integration/celery_app.py``; it is stopped (then killed) when the
test ends, and the queues and exchanges of the test are deleted.
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
from typing import TYPE_CHECKING

import pytest

from tests.conftest import delete_rabbitmq_queues
from tests.contracts.transport_contract import Recorder, command, eventually

if TYPE_CHECKING:
    from sagakit.adapters.transport.celery import CeleryTransport

pytestmark = [pytest.mark.celery, pytest.mark.rabbitmq, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
WORKER_TIMEOUT = 60.0
"""Seconds for the worker to start, run the task and reply."""


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


@pytest.fixture
def kitchen(rabbitmq_url: str, tmp_path: Path) -> Iterator[Kitchen]:
    """A Celery worker consuming a queue of its own."""
    pytest.importorskip("celery")
    suffix = uuid.uuid4().hex[:12]
    found = Kitchen(f"kitchen-{suffix}", f"replies-{suffix}", tmp_path / "worker.log")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "SAGAKIT_TEST_RABBITMQ_URL": rabbitmq_url,
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
        queues = [found.queue, found.replies, f"{found.replies}.dlq"]
        asyncio.run(delete_rabbitmq_queues(*queues))
        asyncio.run(delete_exchanges(rabbitmq_url, found.queue, found.replies))


@pytest.fixture
async def transport(rabbitmq_url: str) -> AsyncIterator[CeleryTransport]:
    celery = pytest.importorskip("sagakit.adapters.transport.celery")
    transport = await celery.CeleryTransport.connect(rabbitmq_url)
    try:
        yield transport
    finally:
        await transport.close()
        await delete_rabbitmq_queues(*sorted(transport.declared_queues))


async def test_a_celery_worker_runs_the_command_and_its_reply_is_consumed(
    kitchen: Kitchen, transport: CeleryTransport
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


async def test_a_pickled_task_message_is_dead_lettered_never_unpickled(
    rabbitmq_url: str, transport: CeleryTransport
) -> None:
    from celery import Celery  # noqa: PLC0415 - an optional extra

    queue = f"orders-{uuid.uuid4().hex[:12]}"
    recorder = Recorder()
    await transport.consume(queue, recorder)
    app = Celery("pickler", broker=rabbitmq_url, set_as_current=False)

    def send_pickled() -> None:
        try:
            app.send_task(
                "kitchen.create_ticket.response.success",
                args=[Tripwire()],
                queue=queue,
                serializer="pickle",
            )
        finally:
            app.close()

    try:
        await asyncio.to_thread(send_pickled)
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
        with contextlib.suppress(Exception):
            await delete_exchanges(rabbitmq_url, queue)
