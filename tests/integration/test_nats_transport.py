"""What the NATS JetStream transport adds to the transport contract: the
deduplication window, dead letters as stored, a consumer that died, names,
URL options. Each test uses a prefix of its own; its streams are deleted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from sagakit.adapters.transport import open_transport
from sagakit.errors import TransportError
from sagakit.messaging.envelope import Envelope
from sagakit.testing.contracts.transport import Recorder, command, eventually
from tests.conftest import delete_nats_streams

pytestmark = pytest.mark.nats

nats_module = pytest.importorskip("sagakit.adapters.transport.nats")
NatsTransport = nats_module.NatsTransport


@pytest.fixture
def prefix() -> str:
    return f"sagakit-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def short_ack(nats_url: str, prefix: str) -> AsyncIterator[NatsTransport]:
    """A transport whose unacknowledged messages come back after 0.3 s."""
    transport = await NatsTransport.connect(nats_url, prefix=prefix, ack_wait=0.3)
    try:
        yield transport
    finally:
        await transport.close()
        await delete_nats_streams(f"{prefix}_")


async def test_the_same_envelope_published_twice_is_stored_once(
    nats_transport: NatsTransport,
) -> None:
    sent, other = command(1), command(2)
    await nats_transport.publish("q", sent)
    await nats_transport.publish("q", sent)  # a retried publish: same Nats-Msg-Id
    await nats_transport.publish("q", other)
    info = await nats_transport._js.stream_info(nats_transport.stream_name("q"))
    assert info.state.messages == 2
    recorder = Recorder(2)
    await nats_transport.consume("q", recorder)
    await recorder.wait()
    assert sorted(m.id for m in recorder.calls) == sorted([sent.id, other.id])


async def test_dead_letters_keep_the_reason_the_id_and_the_count(
    nats_transport: NatsTransport,
) -> None:
    poison = command(1)

    async def fails(message: Envelope) -> None:
        raise ValueError("first line\nsecond line \u00e9")

    await nats_transport.consume("q", fails, max_deliveries=2)
    await nats_transport.publish("q", poison)
    (dead,) = await eventually(lambda: nats_transport.dead_letters("q"))
    assert (
        dead.reason
        == "handler failed 2 times: ValueError: first line\nsecond line \u00e9"
    )
    stored = await nats_transport._js.get_msg(nats_transport.dead_letter_stream("q"), 1)
    assert stored.headers is not None
    assert stored.headers["x-sagakit-id"] == poison.id
    assert stored.headers["x-sagakit-deliveries"] == "2"
    assert stored.headers["x-sagakit-queue"] == "q"
    info = await nats_transport._js.stream_info(nats_transport.stream_name("q"))
    assert info.state.messages == 0  # terminated: gone from the work queue


async def test_a_message_whose_consumer_died_too_often_is_dead_lettered_unhandled(
    short_ack: NatsTransport,
) -> None:
    """A consumer that takes a message and never settles it (it died): the
    server delivers it again after ``ack_wait``; past ``max_deliveries`` it
    goes to the DLQ without reaching the handler."""
    first = await short_ack.consume("q", Recorder())
    await first.cancel()  # the durable consumer now exists
    sent = command(1)
    await short_ack.publish("q", sent)
    dying = await short_ack._js.pull_subscribe_bind(
        durable=short_ack.group, stream=short_ack.stream_name("q")
    )
    (taken,) = await dying.fetch(1, timeout=5)
    assert taken.metadata.num_delivered == 1  # and never acknowledged

    recorder = Recorder()
    await short_ack.consume("q", recorder, max_deliveries=1)
    (dead,) = await eventually(lambda: short_ack.dead_letters("q"))
    assert dead.reason == "not acknowledged after 1 deliveries"
    assert recorder.calls == []
    await dying.unsubscribe()


async def test_a_slow_handler_keeps_its_message(short_ack: NatsTransport) -> None:
    """Marked in progress while it runs, the message is not delivered again
    though the handler takes several ``ack_wait``s."""
    calls: list[str] = []
    done = asyncio.Event()

    async def slow(message: Envelope) -> None:
        calls.append(message.id)
        await asyncio.sleep(1.0)
        done.set()

    await short_ack.consume("q", slow, prefetch=4)
    await short_ack.publish("q", command(1))
    await asyncio.wait_for(done.wait(), 10)
    await asyncio.sleep(0.5)
    assert len(calls) == 1


async def test_a_trickle_of_messages_shares_the_open_pull_request(
    nats_transport: NatsTransport,
) -> None:
    """Messages published one at a time, each after the last was handled,
    reach the subscription on the pull request it keeps open: it does not
    ask the server again for each (a round trip per message; nats-py's
    batched fetch would instead hold a message back until its batch fills)."""
    handled: asyncio.Queue[str] = asyncio.Queue()

    async def handler(message: Envelope) -> None:
        handled.put_nowait(message.id)

    await nats_transport.consume("q", handler, prefetch=8)
    client, asks = nats_transport.client, [0]
    publish = client.publish

    async def counted(subject: str, *args: object, **kwargs: object) -> None:
        asks[0] += ".CONSUMER.MSG.NEXT." in subject  # a pull request
        await publish(subject, *args, **kwargs)  # type: ignore[arg-type]

    client.publish = counted  # type: ignore[method-assign]
    sent = [command(i) for i in range(40)]
    for message in sent:
        await nats_transport.publish("q", message)
        assert await asyncio.wait_for(handled.get(), 10) == message.id
    # one request per second open at most, whatever the machine's speed:
    # 40 asks would be one per message
    assert 1 <= asks[0] <= len(sent) // 2, f"{asks[0]} pull requests for {len(sent)}"


async def test_queue_names_map_to_distinct_streams(
    nats_transport: NatsTransport,
) -> None:
    names = ["a.b", "a_2eb", "a_b", "a b", "é", "", "x_dlq", "x"]
    streams = {nats_transport.stream_name(n) for n in names}
    dead = {nats_transport.dead_letter_stream(n) for n in names}
    assert len(streams | dead) == 2 * len(names)
    sent = {name: command(n) for n, name in enumerate(names)}
    for name, message in sent.items():
        await nats_transport.publish(name, message)
    recorders = {name: Recorder() for name in names}
    for name, recorder in recorders.items():
        await nats_transport.consume(name, recorder)
    for name, message in sent.items():
        await recorders[name].wait()
        assert recorders[name].calls == [message]


async def test_has_queue_looks_up_without_creating(
    nats_transport: NatsTransport,
) -> None:
    assert not await nats_transport.has_queue("q")
    assert not await nats_transport.has_queue("q")
    assert await nats_transport.dead_letters("q") == []
    assert not await nats_transport.has_queue("q")
    await nats_transport.publish("q", command(1))
    assert await nats_transport.has_queue("q")


async def test_a_nats_url_opens_the_transport_with_its_options(
    nats_url: str, prefix: str
) -> None:
    transport = await open_transport(f"{nats_url}?prefix={prefix}&ack_wait=7.5")
    try:
        assert isinstance(transport, NatsTransport)
        assert (transport.prefix, transport.ack_wait) == (prefix, 7.5)
    finally:
        await transport.close()


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("?nope=1", "unknown NATS URL option 'nope'"),
        ("?ack_wait=soon", "ack_wait='soon' is not a number"),
        ("?ack_wait=0", "need ack_wait > 0"),
        ("?prefix=a.b", "prefix may hold only"),
    ],
)
async def test_bad_url_options_are_refused(
    nats_url: str, query: str, error: str
) -> None:
    with pytest.raises(TransportError, match=error):
        await open_transport(f"{nats_url}{query}")


async def test_no_server_is_one_clear_error() -> None:
    with pytest.raises(TransportError, match=r"cannot connect to NATS at 127.0.0.1:1"):
        await NatsTransport.connect("nats://127.0.0.1:1", connect_timeout=2)


async def test_streams_created_while_others_are_deleted_are_all_created(
    nats_url: str,
) -> None:
    """nats-server 2.9 removes the account's stream directory when its last
    stream goes, and fails a create made by another connection meanwhile
    ("error creating store for stream"): the transport tries again. Four
    connections create and delete streams side by side; every create
    succeeds (without the retry, about one in 200 failed here)."""
    prefixes = [f"sagakit-test-{uuid.uuid4().hex[:12]}" for _ in range(4)]
    transports = [await NatsTransport.connect(nats_url, prefix=p) for p in prefixes]

    async def churn(transport: NatsTransport) -> None:
        for i in range(120):
            name = await transport._ensure(f"churn-{i}")
            await transport._js.delete_stream(name)

    try:
        await asyncio.gather(*(churn(t) for t in transports))
    finally:
        for transport, p in zip(transports, prefixes, strict=True):
            await transport.close()
            await delete_nats_streams(f"{p}_")


async def test_a_stream_creation_is_tried_again_only_after_that_race() -> None:
    """The retry is for the server's store race alone, and is bounded."""
    ServerError = pytest.importorskip("nats.js.errors").ServerError

    class JetStream:
        def __init__(self, failures: list[Exception]) -> None:
            self.failures = failures
            self.calls = 0

        async def add_stream(self, config: object) -> None:
            self.calls += 1
            if self.failures:
                raise self.failures.pop(0)

    class Config:
        name = "s"

    race = ServerError(code=500, err_code=nats_module.STORE_RACE, description="x")
    twice = JetStream([race, race])
    await nats_module.add_stream(twice, Config(), pause=0.001)
    assert twice.calls == 3
    always = JetStream([race] * nats_module.CREATE_TRIES)
    with pytest.raises(ServerError):
        await nats_module.add_stream(always, Config(), pause=0.001)
    assert always.calls == nats_module.CREATE_TRIES
    other = JetStream([ServerError(code=500, err_code=10001, description="y")])
    with pytest.raises(ServerError):
        await nats_module.add_stream(other, Config(), pause=0.001)
    assert other.calls == 1
