"""An AMQP subscription: a consumer on a channel of its own.

:func:`subscribe` opens the channel (its own QoS prefetch), declares the
queue on it, and consumes it with :class:`~sagakit.adapters.transport.
amqp_consumer.RawConsumer`: each delivery is settled
(:func:`~sagakit.adapters.transport.amqp_settle.settle`) in the task aiormq
runs it in, and acknowledged by the channel's
:class:`~sagakit.adapters.transport.amqp_consumer.Acks` loop. A delivery
that could not be settled (its handler failed and the broker refused it
sent on, or the connection dropped) is given back after
:data:`REQUEUE_PAUSE`, and counted towards ``max_deliveries`` when it comes
again (:mod:`~sagakit.adapters.transport.amqp_given_back`). Cancelling the
subscription cancels the handlers in flight and closes the channel, so the
broker requeues what was not acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sagakit._extras import needs_extra
from sagakit.adapters.transport.amqp_consumer import Acks, Delivered, RawConsumer
from sagakit.adapters.transport.amqp_given_back import GivenBack
from sagakit.adapters.transport.amqp_settle import settle
from sagakit.adapters.transport.base import BaseSubscription
from sagakit.errors import TransportError
from sagakit.ports.transport import Handler

with needs_extra(
    "RabbitTransport and CeleryTransport need aio-pika", "rabbitmq", "celery"
):
    from aio_pika.abc import AbstractChannel, AbstractQueue
    from aiormq.abc import DeliveredMessage

if TYPE_CHECKING:
    from sagakit.adapters.transport.amqp import AmqpTransport

__all__ = ["REQUEUE_PAUSE", "AmqpSubscription", "Declare", "subscribe"]

REQUEUE_PAUSE = 1.0
"""Seconds a delivery that could not be settled (sent on after its handler
failed, or dead-lettered: the broker refused) waits before it is given back
to the broker, to be delivered again (counted: a handler that keeps failing
runs at most ``max_deliveries`` times; a message the dead-letter queue
refuses comes back every pause until it is taken)."""

Declare = Callable[[AbstractChannel], Awaitable[AbstractQueue]]
"""Declares the queue to consume on the subscription's channel."""


class AmqpSubscription(BaseSubscription):
    """A consumer on a channel of its own."""

    def __init__(
        self,
        transport: AmqpTransport,
        channel: AbstractChannel,
        queue: AbstractQueue,
        acks: Acks,
    ) -> None:
        super().__init__(transport)
        self._amqp = transport
        self.channel = channel
        self.queue = queue
        self.acks = acks
        self.consumer: RawConsumer | None = None
        self.inflight: set[asyncio.Task[object]] = set()

    async def _stop(self) -> None:
        """In-flight handlers are cancelled, what they finished is
        acknowledged, then the channel is closed, which makes the broker
        requeue every message it delivered on it and that was not
        acknowledged."""
        errors = self._amqp.errors
        try:
            if self.consumer is not None and not self.channel.is_closed:
                with errors(f"cancelling the consumer of {self.queue.name}"):
                    await self.consumer.cancel()
        finally:
            current = asyncio.current_task()
            tasks = [t for t in self.inflight if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.acks.stop()
            if not self.channel.is_closed:
                with errors(f"closing the channel of {self.queue.name}"):
                    await self.channel.close()


async def subscribe(
    host: AmqpTransport,
    queue: str,
    declare: Declare,
    handler: Handler,
    limits: tuple[int, int],
) -> AmqpSubscription:
    """Consume what ``declare`` declares on a channel of its own, ``limits``
    being (prefetch, max deliveries); what fails goes back to the logical
    ``queue`` or its dead-letter queue."""
    prefetch, max_deliveries = limits
    name = host.queue_name(queue)
    await host.ensure(f"{name}.dlq")
    channel = await host.consumer_channel(prefetch)
    try:
        declared = await declare(channel)
    except TransportError:
        with contextlib.suppress(*host.driver_errors):
            await channel.close()
        raise
    acks = Acks(host.log, queue, host.writes)
    subscription = AmqpSubscription(host, channel, declared, acks)
    inflight = subscription.inflight
    given_back = GivenBack()  # what on_message gave back, to count it

    async def on_message(message: DeliveredMessage) -> None:
        # aiormq runs each delivery in a task of its own
        task = asyncio.current_task()
        if task is not None:
            inflight.add(task)
        delivered = Delivered(message)
        acks.received(delivered)
        try:
            await settle(
                host, queue, delivered, handler, max_deliveries, given_back=given_back
            )
        except asyncio.CancelledError:
            raise  # not acknowledged: requeued when the channel closes
        except Exception:  # a driver error sending it on: delivered again
            host.log.warning(
                "settling failed; message requeued",
                exc_info=True,
                extra={"action": "settle_failed", "queue": queue},
            )
            await asyncio.sleep(REQUEUE_PAUSE)  # not a hot loop while it fails
            acks.requeue(delivered)
        else:
            acks.settled(delivered)
        finally:
            if task is not None:
                inflight.discard(task)

    consumer = RawConsumer(channel, declared.name, on_message)
    try:
        with host.errors(f"consuming {declared.name}"):
            await consumer.start()
            subscription.consumer = consumer
    except TransportError:
        await subscription.cancel()
        raise
    return subscription
