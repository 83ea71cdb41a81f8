"""Replies routed to the process that sent the command, on the real broker:
each process's own queue, the shared queue for keys nobody consumes, and
forwarding what waits for a process that left."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step
from sagakit.adapters.transport.amqp_replies import owner_queue
from sagakit.definition import Remote
from sagakit.messaging.envelope import Envelope, encode
from sagakit.participant import Participant
from sagakit.ports.transport import ReplyRouting
from sagakit.testing.contracts.transport import Recorder, command
from tests.conftest import amqp_transport, rabbitmq_ready

if TYPE_CHECKING:
    from sagakit.adapters.transport.amqp import AmqpTransport
    from sagakit.adapters.transport.rabbitmq import RabbitTransport

pytestmark = pytest.mark.rabbitmq
QUEUE = "replies"


def reply(n: int) -> Envelope:
    return command(n).reply(ok=True, payload={"n": n})


async def never(message: Envelope) -> None:
    raise AssertionError(f"{message.id} came to the wrong queue")


async def test_the_rabbitmq_transport_routes_replies(
    rabbit_transport: RabbitTransport,
) -> None:
    assert isinstance(rabbit_transport, ReplyRouting)


@pytest.fixture(params=["rabbitmq", pytest.param("celery", marks=pytest.mark.celery)])
async def routing(
    request: pytest.FixtureRequest, rabbitmq_url: str
) -> AsyncIterator[AmqpTransport]:
    """A RabbitMQ or a Celery-on-RabbitMQ transport, with a prefix of its own."""
    name = request.param
    module = pytest.importorskip(f"sagakit.adapters.transport.{name}")
    kind = module.RabbitTransport if name == "rabbitmq" else module.CeleryTransport
    async with amqp_transport(kind, rabbitmq_url) as transport:
        yield transport


async def test_a_reply_reaches_the_queue_of_its_key_only(
    routing: AmqpTransport,
) -> None:
    own, shared = Recorder(), Recorder()
    await routing.consume(QUEUE, shared)
    await routing.consume_own_replies(QUEUE, "w1", own)
    await routing.publish_reply(QUEUE, "w1", encode(reply(1)))
    await routing.publish_reply(QUEUE, "nobody", encode(reply(2)))
    await own.wait()
    await shared.wait()
    assert [m.payload for m in own.handled] == [{"n": 1}]
    assert [m.payload for m in shared.handled] == [{"n": 2}]


async def test_a_key_that_cannot_name_a_queue_goes_to_the_shared_queue(
    rabbit_transport: RabbitTransport,
) -> None:
    shared = Recorder()
    await rabbit_transport.consume(QUEUE, shared)
    await rabbit_transport.publish_reply(
        QUEUE, "no spaces/or slashes", encode(reply(3))
    )
    await shared.wait()
    assert [m.payload for m in shared.handled] == [{"n": 3}]


async def test_replies_waiting_for_an_owner_that_left_are_forwarded(
    rabbit_transport: RabbitTransport,
) -> None:
    """The owner's consumer goes away as in a crash (nothing forwarded):
    its replies wait in its queue until another process forwards them, and
    later replies for its key go to the shared queue."""
    transport = rabbit_transport
    own = await transport.consume_own_replies(QUEUE, "gone", never)
    await own.cancel()
    for n in range(3):
        await transport.publish_reply(QUEUE, "gone", encode(reply(n)))
    name = owner_queue(transport.queue_name(QUEUE), "gone")
    assert await rabbitmq_ready(name) == 3

    assert await transport.forward_replies(QUEUE, "gone") == 3
    assert await rabbitmq_ready(name) is None  # deleted
    await transport.publish_reply(QUEUE, "gone", encode(reply(3)))
    shared = Recorder(expected=4)
    await transport.consume(QUEUE, shared)
    await shared.wait()
    assert sorted(m.payload["n"] for m in shared.handled) == [0, 1, 2, 3]
    assert await transport.forward_replies(QUEUE, "gone") == 0  # nothing left


async def test_the_queue_of_a_live_owner_is_not_forwarded(
    rabbit_transport: RabbitTransport,
) -> None:
    transport = rabbit_transport
    own = Recorder()
    await transport.consume_own_replies(QUEUE, "live", own)
    assert await transport.forward_replies(QUEUE, "live") == 0
    await transport.publish_reply(QUEUE, "live", encode(reply(5)))
    await own.wait()
    assert [m.payload for m in own.handled] == [{"n": 5}]


async def test_a_reply_left_too_long_in_its_owners_queue_moves_to_the_shared_one(
    rabbit_transport: RabbitTransport,
) -> None:
    """No process forwards it (its owner died on another host, say): it
    expires into the shared queue after ``reply_ttl``."""
    transport = rabbit_transport
    transport.reply_ttl = 0.05
    own = await transport.consume_own_replies(QUEUE, "far", never)
    await own.cancel()
    await transport.publish_reply(QUEUE, "far", encode(reply(6)))
    shared = Recorder()
    await transport.consume(QUEUE, shared)
    await shared.wait()
    assert [m.payload for m in shared.handled] == [{"n": 6}]


async def test_a_reply_its_handler_failed_on_goes_on_through_the_shared_queue(
    rabbit_transport: RabbitTransport,
) -> None:
    transport = rabbit_transport
    own = Recorder(fail=lambda message, attempt: True)
    shared = Recorder()
    await transport.consume_own_replies(QUEUE, "flaky", own)
    await transport.publish_reply(QUEUE, "flaky", encode(reply(7)))
    await transport.consume(QUEUE, shared)
    await shared.wait()
    assert [m.payload for m in shared.handled] == [{"n": 7}]
    assert len(own.calls) == 1


async def test_replies_batched_for_one_owner_reach_its_queue(
    rabbit_transport: RabbitTransport,
) -> None:
    """With ``batch``, replies to one key published together travel as one
    broker message to that key's queue."""
    transport = rabbit_transport
    transport.batch = True
    own = Recorder(expected=5)
    await transport.consume_own_replies(QUEUE, "b1", own)
    await asyncio.gather(
        *(transport.publish_reply(QUEUE, "b1", encode(reply(n))) for n in range(5))
    )
    await own.wait()
    assert sorted(m.payload["n"] for m in own.handled) == list(range(5))


# -- orchestrators ---------------------------------------------------------------


class Held(BaseModel):
    n: int = 0


def held_saga(queue: str) -> Saga[Held]:
    return Saga(
        "held",
        [Step("hold", Remote("desk.hold", lambda ctx: {"n": ctx.n}, queue=queue))],
        context=Held,
    )


async def test_a_reply_for_a_saga_another_process_took_over_is_applied(
    rabbit_transport: RabbitTransport, tmp_path: Path
) -> None:
    """The command went out from ``first``, so its reply comes to
    ``first``'s own queue; meanwhile ``first`` handed the saga over and
    ``second`` claimed it. ``first`` applies the reply on the stored state
    (taking the saga back) and the saga ends once; ``second``'s copy, which
    only waited, stops at its next lease renewal."""
    transport = rabbit_transport
    queue = f"desk-{uuid.uuid4().hex[:8]}"
    saga = held_saga(queue)
    store = SQLiteStore(tmp_path / "sagas.db")
    received, release = asyncio.Event(), asyncio.Event()
    desk = Participant(
        "desk", transport, SQLiteStore(tmp_path / "desk.db"), queue=queue
    )

    @desk.handler("desk.hold")
    async def hold(cmd: dict[str, int]) -> dict[str, int]:
        received.set()
        await release.wait()
        return {"n": cmd["n"]}

    await desk.start()
    first = Orchestrator(store, [saga], transport=transport, lease=30.0)
    second = Orchestrator(store, [saga], transport=transport, lease=30.0)
    async with first.serving(), second.serving():
        saga_id = await first.start(saga, Held(n=4))
        async with asyncio.timeout(10):
            await received.wait()
        assert await first.stop_driving() == [saga_id]  # released
        assert await second.recover() == [saga_id]
        release.set()
        async with asyncio.timeout(10):
            while (await store.get(saga_id)).status is not SagaStatus.SUCCEEDED:  # noqa: ASYNC110 - a store has no event for it
                await asyncio.sleep(0.02)
        await second.renew_leases()
        async with asyncio.timeout(10):
            while second.active:  # noqa: ASYNC110 - its copy stops in its task
                await asyncio.sleep(0.02)
        assert first.active == 0
    history = await store.history(saga_id)
    assert [(h.step, h.outcome) for h in history if h.kind == "action"] == [
        ("hold", "succeeded")
    ]
    assert (await store.get(saga_id)).state.step("hold").result == {"n": 4}
    with sqlite3.connect(tmp_path / "sagas.db") as conn:
        (owner,) = conn.execute(
            "SELECT owner FROM sagakit_saga WHERE saga_id = ?", (saga_id,)
        ).fetchone()
    assert owner == first.worker_id  # the reply came to first's own queue
    await desk.stop()
