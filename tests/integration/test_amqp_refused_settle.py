"""A failing message the broker refuses to take back, on the real broker.

When a handler fails, the AMQP transports republish the message, confirmed,
with its delivery count incremented (or dead-letter it). If the broker
refuses that publish, the delivery is given back to it and comes again with
the count it had: it must still count towards ``max_deliveries``, and a
message the dead-letter queue refuses must stay in its queue, not be lost.

RabbitMQ refuses here for real: a policy (``rabbitmqctl set_policy``) caps
the queue at one ready message with ``reject-publish`` (the transports
declare their queues without arguments, so a policy is the way to cap one),
or the dead-letter queue is deleted (the publish is unroutable).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest

from sagakit.adapters.transport import amqp_subscription
from sagakit.messaging.envelope import Envelope, encode
from sagakit.testing.contracts.transport import Recorder, command
from tests.conftest import amqp_transport, delete_rabbitmq_queues, unavailable
from tests.integration.test_rabbitmq_reconnect import declare_queue

if TYPE_CHECKING:
    from sagakit.adapters.transport.celery import CeleryTransport
    from sagakit.adapters.transport.rabbitmq import RabbitTransport

    AmqpTransport = RabbitTransport | CeleryTransport

pytestmark = pytest.mark.rabbitmq

GUARD = 30.0  # seconds a test waits at most for what must happen (a hang guard)


@pytest.fixture(
    params=["rabbitmq", "batch", pytest.param("celery", marks=pytest.mark.celery)]
)
async def amqp(
    request: pytest.FixtureRequest, rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AmqpTransport]:
    """A RabbitMQ (sending batches, for ``batch``) or Celery-on-RabbitMQ
    transport that gives back what it could not settle after 0.05 s (not 1 s)."""
    name = "celery" if request.param == "celery" else "rabbitmq"
    module = pytest.importorskip(f"sagakit.adapters.transport.{name}")
    kind = module.RabbitTransport if name == "rabbitmq" else module.CeleryTransport
    monkeypatch.setattr(amqp_subscription, "REQUEUE_PAUSE", 0.05)
    async with amqp_transport(kind, rabbitmq_url) as transport:
        if request.param == "batch":
            transport.batch = True
        yield transport


def rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        unavailable("rabbitmqctl not found: cannot set a queue policy")
    done = subprocess.run(
        [ctl, "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        unavailable(f"rabbitmqctl {args[0]}: {done.stderr or done.stdout}".strip())


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD):
        while not check():  # noqa: ASYNC110 - polls what a handler recorded
            await asyncio.sleep(0.01)


async def test_a_failing_message_its_queue_refuses_back_is_dead_lettered(
    amqp: AmqpTransport,
) -> None:
    """The queue holds one ready message at most, and another waits in it
    while the failing one is handled: each republish is refused (nack). The
    handler ran forever, once a pause, the refused republishes uncounted.
    Sending batches, the failing one shares its broker message with a
    partner that is handled (again on each delivery: at least once)."""
    name = amqp.queue_name("q")
    stuck, filler, partner = command(1), command(2), command(3)
    filled = asyncio.Event()
    calls: list[str] = []

    async def handler(message: Envelope) -> None:
        calls.append(message.id)
        if message.id == stuck.id:
            await filled.wait()  # the filler is in the queue: refused back
            raise ValueError("boom")

    await amqp.consume("q", handler, prefetch=1, max_deliveries=3)  # declares
    policy = json.dumps({"max-length": 1, "overflow": "reject-publish"})
    await asyncio.to_thread(
        rabbitmqctl, "set_policy", "--apply-to", "queues", name, f"^{name}$", policy
    )
    try:
        if getattr(amqp, "batch", False):  # one broker message
            sent = await amqp.publish_many([("q", encode(m)) for m in (stuck, partner)])
            await asyncio.gather(*sent)
        else:
            await amqp.publish("q", stuck)
        await until(lambda: stuck.id in calls)
        await amqp.publish("q", filler)
        filled.set()
        async with asyncio.timeout(GUARD):  # dead-lettered, or run once too often
            while calls.count(stuck.id) <= 3 and not await amqp.dead_letters("q"):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert calls.count(stuck.id) == 3
        if getattr(amqp, "batch", False):  # both came in each delivery
            assert calls.count(partner.id) == 3
        (dead,) = await amqp.dead_letters("q")
        assert "handler failed 3 times: ValueError: boom" in dead.reason
        await until(lambda: filler.id in calls)
    finally:
        await asyncio.to_thread(rabbitmqctl, "clear_policy", name)


async def test_a_message_the_dead_letter_queue_refuses_stays_until_it_takes_it(
    amqp: AmqpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """Its handler failed for the last time and its dead-lettering is refused
    (no dead-letter queue: someone deleted it). Given back, it comes again
    and goes to the dead-letter queue again, its handler not run again (it
    ran each time), until the dead-letter queue is back and takes it."""
    failing = Recorder(fail=lambda message, attempt: True)
    await amqp.consume("q", failing, max_deliveries=1)
    dlq = f"{amqp.queue_name('q')}.dlq"
    await delete_rabbitmq_queues(dlq)
    sent = command(5)
    caplog.set_level(logging.WARNING)
    await amqp.publish("q", sent)
    await until(
        lambda: (
            sum(getattr(r, "action", None) == "settle_failed" for r in caplog.records)
            >= 3
        )
    )
    assert failing.attempts(sent.id) == 1
    await declare_queue(dlq)
    async with asyncio.timeout(GUARD):
        while not await amqp.dead_letters("q"):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    (dead,) = await amqp.dead_letters("q")
    assert "handler failed 1 times" in dead.reason
    assert failing.attempts(sent.id) == 1
