"""The NATS floor of ``remote_nats.py``: a 3-step saga in bare nats-py.

The same traffic as ``amqp_echo.py`` on NATS JetStream, with no saga library,
no database and no state, so its rate is an upper bound for any saga library
on the same server and machine. Two parts:

- ``python nats_echo.py echo --server URL --subject S``: one service. It
  fetches from a durable pull consumer (explicit acks) of the work-queue
  stream on ``S``, at most 32 messages at a time (sagakit's prefetch), and for
  each publishes the body to the subject in its ``reply`` header through
  JetStream (awaiting the publish acknowledgement), then acks it.
- :class:`EchoSagas`, used in-process by ``remote_nats.py``: runs a "saga" as
  three round trips in order, to echo subject ``a``, then ``b``, then ``c``,
  through a reply stream of its own. Each saga moves 6 JetStream messages,
  all stored in file-backed streams, acknowledged on publish and acked by
  hand, as sagakit's orchestrator and participants do on NATS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from sagakit.runtime import loop as event_loop

PREFETCH = 32  # sagakit's Participant and reply consumer default
DURABLE = "echo"


def stream_of(subject: str) -> str:
    return subject.replace(".", "_")


async def work_queue(js: JetStreamContext, subject: str) -> None:
    """The file-backed work-queue stream on ``subject`` (created once)."""
    name = stream_of(subject)
    try:
        await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(
            api.StreamConfig(
                name=name,
                subjects=[subject],
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
            )
        )


async def pull(js: JetStreamContext, subject: str) -> JetStreamContext.PullSubscription:
    await work_queue(js, subject)
    config = api.ConsumerConfig(
        durable_name=DURABLE,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
    )
    await js.add_consumer(stream_of(subject), config)
    return await js.pull_subscribe_bind(durable=DURABLE, stream=stream_of(subject))


async def consume(
    js: JetStreamContext, subject: str, handle: Callable[[Msg], Awaitable[None]]
) -> None:
    """Fetch and handle ``subject``'s messages (32 at a time) until cancelled."""
    subscription = await pull(js, subject)
    running: set[asyncio.Task[None]] = set()
    while True:
        free = PREFETCH - len(running)
        if free <= 0:
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            continue
        try:
            fetched = await subscription.fetch(free, timeout=1.0)
        except TimeoutError:
            continue
        for msg in fetched:
            task = asyncio.create_task(handle(msg))
            running.add(task)
            task.add_done_callback(running.discard)


# -- the echo service ----------------------------------------------------------


async def echo(server: str, subject: str) -> None:
    """Echo every message of ``subject`` to its ``reply`` header until SIGTERM."""
    client = await nats.connect(server)
    js = client.jetstream()

    async def handle(msg: Msg) -> None:
        headers = msg.headers or {}
        if "reply" in headers:
            await js.publish(
                headers["reply"], msg.data, headers={"corr": headers["corr"]}
            )
        await msg.ack()

    task = asyncio.create_task(consume(js, subject, handle))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await client.close()


# -- the driver ----------------------------------------------------------------


class EchoSagas:
    """Runs 3-step "sagas" against echo services over one connection."""

    def __init__(self, client: Client, steps: Sequence[str], reply: str) -> None:
        self.client = client
        self.js = client.jetstream()
        self.steps = list(steps)
        self.reply = reply
        self.waiting: dict[str, asyncio.Future[bytes]] = {}
        self.published = 0
        self.replies = 0
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, server: str, steps: Sequence[str], reply: str) -> EchoSagas:
        self = cls(await nats.connect(server), steps, reply)
        for step in steps:
            await work_queue(self.js, step)
        self.task = asyncio.create_task(consume(self.js, reply, self._on_reply))
        return self

    async def _on_reply(self, msg: Msg) -> None:
        self.replies += 1
        future = self.waiting.pop((msg.headers or {}).get("corr", ""), None)
        await msg.ack()
        if future is not None and not future.done():
            future.set_result(msg.data)

    async def run(self, body: bytes) -> None:
        """One saga: a round trip to each echo subject in order."""
        loop = asyncio.get_running_loop()
        for step in self.steps:
            corr = uuid.uuid4().hex
            future: asyncio.Future[bytes] = loop.create_future()
            self.waiting[corr] = future
            try:
                await self.js.publish(
                    step, body, headers={"corr": corr, "reply": self.reply}
                )
                self.published += 1
                body = await future
            finally:
                self.waiting.pop(corr, None)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    roles = parser.add_subparsers(dest="role", required=True)
    role = roles.add_parser("echo", help="echo a work-queue stream to its reply")
    role.add_argument("--server", required=True, help="NATS URL")
    role.add_argument("--subject", required=True, help="the subject to consume")
    args = parser.parse_args(argv)
    event_loop.run(echo(args.server, args.subject))  # sagakit's loop (uvloop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
