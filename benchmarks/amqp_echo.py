"""The "floor" of ``remote_throughput.py``: a 3-step saga in bare aio-pika.

No saga library, no database, no state: the same broker traffic as a sagakit
saga and nothing else, so its rate is an upper bound for any saga library on
the same broker and machine. Two parts:

- ``python amqp_echo.py echo --broker URL --queue Q``: one service. It
  consumes the durable queue ``Q`` (prefetch 32, like sagakit's
  ``Participant``) and, for each message, publishes the body back as a
  persistent message to the queue named by its ``reply_to`` (on a channel with
  publisher confirms, awaiting the confirm), then acks the message. SIGTERM
  stops it cleanly.
- :class:`EchoSagas`, used in-process by ``remote_throughput.py``: runs a
  "saga" as three round trips in order, to echo queue ``a``, then ``b``, then
  ``c``, through a durable reply queue of its own. Each saga moves 6 broker
  messages, all persistent, confirmed when published and acked by hand, as
  sagakit's orchestrator and participants do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

PREFETCH = 32  # sagakit's Participant and reply consumer default
CONTENT_TYPE = "application/json"


def persistent(
    body: bytes, correlation_id: str | None, reply_to: str | None = None
) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        correlation_id=correlation_id,
        reply_to=reply_to,
    )


# -- the echo service ----------------------------------------------------------


async def echo(broker: str, queue: str) -> None:
    """Echo every message of ``queue`` to its ``reply_to`` until SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connection = await aio_pika.connect(broker, timeout=10)
    async with connection:
        publisher = await connection.channel(publisher_confirms=True)
        consumer = await connection.channel(publisher_confirms=False)
        await consumer.set_qos(prefetch_count=PREFETCH)
        declared = await consumer.declare_queue(queue, durable=True)

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            reply = persistent(incoming.body, incoming.correlation_id)
            if incoming.reply_to:
                # the confirm is awaited before the incoming message is acked
                await publisher.default_exchange.publish(
                    reply, routing_key=incoming.reply_to
                )
            await incoming.ack()

        tag = await declared.consume(on_message)
        await stop.wait()
        await declared.cancel(tag)


# -- the driver ----------------------------------------------------------------


class EchoSagas:
    """Runs 3-step "sagas" against echo services; one connection, two channels.

    Use :meth:`connect`, then :meth:`run` as often and as concurrently as
    wanted, then :meth:`close`. ``published`` and ``replies`` count the broker
    messages this side sent and consumed.
    """

    def __init__(
        self,
        connection: AbstractConnection,
        publisher: AbstractChannel,
        replies: AbstractQueue,
        steps: Sequence[str],
    ) -> None:
        self.connection = connection
        self.publisher = publisher
        self.reply_queue = replies
        self.steps = list(steps)
        self.waiting: dict[str, asyncio.Future[bytes]] = {}
        self.published = 0
        self.replies = 0
        self.consumer_tag: str | None = None

    @classmethod
    async def connect(
        cls, broker: str, steps: Sequence[str], reply_queue: str
    ) -> EchoSagas:
        """Connect and consume ``reply_queue``; ``steps`` are the echo queues."""
        connection = await aio_pika.connect(broker, timeout=10)
        publisher = await connection.channel(publisher_confirms=True)
        consumer = await connection.channel(publisher_confirms=False)
        await consumer.set_qos(prefetch_count=PREFETCH)
        replies = await consumer.declare_queue(reply_queue, durable=True)
        self = cls(connection, publisher, replies, steps)
        self.consumer_tag = await replies.consume(self._on_reply)
        return self

    async def _on_reply(self, incoming: AbstractIncomingMessage) -> None:
        self.replies += 1
        future = self.waiting.pop(incoming.correlation_id or "", None)
        await incoming.ack()
        if future is not None and not future.done():
            future.set_result(incoming.body)

    async def run(self, body: bytes) -> None:
        """One saga: a round trip to each echo queue in order."""
        loop = asyncio.get_running_loop()
        for step in self.steps:
            correlation_id = uuid.uuid4().hex
            future: asyncio.Future[bytes] = loop.create_future()
            self.waiting[correlation_id] = future
            message = persistent(body, correlation_id, self.reply_queue.name)
            try:
                await self.publisher.default_exchange.publish(message, routing_key=step)
                self.published += 1
                body = await future
            finally:
                self.waiting.pop(correlation_id, None)

    async def close(self) -> None:
        try:
            if self.consumer_tag is not None:
                await self.reply_queue.cancel(self.consumer_tag)
        finally:
            await self.connection.close()


# -- command line --------------------------------------------------------------


def _loop_factory() -> Any:
    """The loop sagakit's CLI would use (``SAGAKIT_EVENT_LOOP``, default auto:
    uvloop when installed), so that the floor runs on the same loop."""
    if os.environ.get("SAGAKIT_EVENT_LOOP", "auto") == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    roles = parser.add_subparsers(dest="role", required=True)
    role = roles.add_parser("echo", help="echo a durable queue to reply_to")
    role.add_argument("--broker", required=True, help="RabbitMQ URL")
    role.add_argument("--queue", required=True, help="the durable queue to consume")
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(echo(args.broker, args.queue))
    return 0


if __name__ == "__main__":
    sys.exit(main())
