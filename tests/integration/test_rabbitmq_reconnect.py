"""The AMQP transports across a dropped connection, and a message that
could not be settled, on the real broker.

Each transport here reaches RabbitMQ through a loopback proxy of its own
(:class:`tests.chaos.proxy.Route`, run in the test's loop) that resets its
connections on demand, as a broker restart or a network fault would; the
broker and everyone else's connections are left alone. The connection
reconnects by itself (``reconnect_interval``, short here), and so do its
channels, after it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from sagakit import SQLiteStore
from sagakit.messaging.envelope import Envelope, encode
from sagakit.participant import Participant
from sagakit.testing.contracts.transport import Recorder, command
from tests.chaos.proxy import Route
from tests.conftest import RABBITMQ_URL, amqp_transport, delete_rabbitmq_queues

if TYPE_CHECKING:
    from sagakit.adapters.transport.amqp import AmqpTransport
    from sagakit.adapters.transport.rabbitmq import RabbitTransport

pytestmark = pytest.mark.rabbitmq

GUARD = 30.0  # seconds a test waits at most for what must happen (a hang guard)


class Link:
    """A proxy between the transport and the broker: ``cut`` resets every
    connection through it (and refuses new ones) until ``heal``."""

    def __init__(self, route: Route, server: asyncio.Server, url: str) -> None:
        self.route, self.server, self.url = route, server, url

    def cut(self) -> None:
        self.route.set_mode({"mode": "drop"})

    def heal(self) -> None:
        self.route.set_mode({"mode": "ok"})


@pytest.fixture
async def link(rabbitmq_url: str) -> AsyncIterator[Link]:
    broker = urlsplit(rabbitmq_url)
    route = Route("mq", broker.hostname or "127.0.0.1", broker.port or 5672)
    server = await asyncio.start_server(route.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    netloc = f"{broker.netloc.rpartition('@')[0]}@127.0.0.1:{port}"
    url = urlunsplit(broker._replace(netloc=netloc, query="reconnect_interval=0.1"))
    try:
        yield Link(route, server, url)
    finally:
        server.close()
        for writer in list(route.links):
            writer.transport.abort()


@pytest.fixture(params=["rabbitmq", pytest.param("celery", marks=pytest.mark.celery)])
async def proxied(
    request: pytest.FixtureRequest, link: Link
) -> AsyncIterator[AmqpTransport]:
    """A RabbitMQ or Celery-on-RabbitMQ transport connected through ``link``."""
    name = request.param
    module = pytest.importorskip(f"sagakit.adapters.transport.{name}")
    kind = module.RabbitTransport if name == "rabbitmq" else module.CeleryTransport
    async with amqp_transport(kind, link.url) as transport:
        yield transport


async def until(what: str, check: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD):
        while not check():  # noqa: ASYNC110 - polls a proxy's and a driver's state
            await asyncio.sleep(0.01)


async def outage(link: Link, transport: AmqpTransport, *during: Any) -> list[Any]:
    """Cut ``link``; once ``transport`` has seen it, start ``during`` (the
    awaitables to run meanwhile: they wait for the connection); heal it and
    return what they gave (raising what they raised)."""
    link.cut()
    await until("the transport to see the cut", lambda: not transport.connected)
    started = [asyncio.ensure_future(work) for work in during]
    await asyncio.sleep(0)  # each is waiting for the connection now
    link.heal()
    async with asyncio.timeout(GUARD):
        return list(await asyncio.gather(*started))


async def test_a_publish_made_while_the_connection_is_down_goes_out_after_it(
    proxied: AmqpTransport, link: Link
) -> None:
    """Before the fix the publish woke up when the connection was back but
    its channel not yet: it went to the closed channel and failed."""
    got = Recorder(2)
    before, during = command(1), command(2)
    await proxied.consume("q", got)
    await proxied.publish("q", before)
    await outage(link, proxied, proxied.publish("q", during))
    await got.wait()
    assert {m.id for m in got.handled} == {before.id, during.id}  # at least once


async def test_a_reply_routed_while_the_connection_is_down_goes_out_after_it(
    proxied: AmqpTransport, link: Link
) -> None:
    own = Recorder(2)
    await proxied.consume_own_replies("replies", "w1", own)
    before, during = (command(n).reply(ok=True, payload={}) for n in (3, 4))
    await proxied.publish_reply("replies", "w1", encode(before))  # declared now
    await outage(link, proxied, proxied.publish_reply("replies", "w1", encode(during)))
    await own.wait()
    assert {m.id for m in own.handled} == {before.id, during.id}


async def test_a_participant_replies_to_a_command_it_took_before_an_outage(
    link: Link, rabbitmq_url: str, tmp_path: Path
) -> None:
    """The chaos run's lost reply: the participant handled a command and
    stored its reply, and sent it while its connection was down. The reply
    must reach the orchestrator once the connection is back (it used to be
    lost, and with it the step: its saga timed out)."""
    from sagakit.adapters.transport.rabbitmq import RabbitTransport  # noqa: PLC0415

    prefix = f"sagakit-test-{uuid.uuid4().hex[:12]}"
    store = SQLiteStore(tmp_path / "inbox.db")
    async with (
        amqp_transport(RabbitTransport, link.url) as near,
        amqp_transport(RabbitTransport, rabbitmq_url) as far,
    ):
        near.prefix = far.prefix = prefix  # one namespace, two connections
        replies = Recorder(2)
        await far.consume("orders.replies", replies)
        stock = Participant("stock", near, store)

        stock.handler("stock.ship")(ship)
        before, during = (ship_command(n) for n in (1, 2))
        await stock.handle(before)  # its reply queue is declared now
        await outage(link, near, stock.handle(during))
        await replies.wait()
    assert {m.id for m in replies.handled} == {
        f"{sent.id}.reply" for sent in (before, during)
    }
    assert all(m.payload == {"shipped": True} for m in replies.handled)
    assert stock.handled == 2


def ship_command(n: int) -> Envelope:
    saga_id = f"s{n}-{uuid.uuid4().hex[:8]}"
    return Envelope(
        id=f"{saga_id}.ship.a1",
        kind="command",
        type="stock.ship",
        correlation_id=f"{saga_id}:ship:1",
        saga_id=saga_id,
        step="ship",
        reply_to="orders.replies",
        payload={},
    )


async def declare_queue(name: str) -> None:
    """Declare the durable queue ``name`` (as the transport would)."""
    import aio_pika  # noqa: PLC0415 - only the RabbitMQ tests need the driver

    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True)


async def test_a_participant_retries_a_reply_the_broker_refused(
    rabbit_transport: RabbitTransport,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reply that fails to go out is retried in place: raised, it failed
    the delivery, and each failure counted towards dead-lettering the
    command (whose stored reply would then never be sent)."""
    stock = Participant("stock", rabbit_transport, SQLiteStore(tmp_path / "inbox.db"))
    stock.handler("stock.ship")(ship)
    replies = Recorder(2)
    await rabbit_transport.consume("orders.replies", replies)
    before, refused = (ship_command(n) for n in (1, 2))
    await stock.handle(before)
    reply_queue = rabbit_transport.queue_name("orders.replies")
    await delete_rabbitmq_queues(reply_queue)  # unroutable: the broker refuses
    handling = asyncio.ensure_future(stock.handle(refused))
    await until(
        "a refused reply",
        lambda: any(
            r.message.startswith("reply publish failed") for r in caplog.records
        ),
    )
    await declare_queue(reply_queue)
    async with asyncio.timeout(GUARD):
        await handling  # did not raise
    await rabbit_transport.consume("orders.replies", replies)  # consumed again
    await replies.wait()
    assert {m.id for m in replies.handled} >= {f"{refused.id}.reply"}
    assert stock.handled == 2


async def ship(cmd: dict[str, Any]) -> dict[str, Any]:
    return {"shipped": True}
