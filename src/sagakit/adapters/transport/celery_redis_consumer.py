"""The consuming side of
:class:`~sagakit.adapters.transport.celery_redis.CeleryRedisTransport`: one
subscription's take/restore loop and its handler tasks. The behaviour is
described in :mod:`sagakit.adapters.transport.celery_redis`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from asyncio import FIRST_COMPLETED
from typing import TYPE_CHECKING, Any

from sagakit.adapters.transport.base import LoopSubscription
from sagakit.adapters.transport.celery_wire import open_task
from sagakit.adapters.transport.delivery import (
    ACK,
    DELIVERIES_HEADER,
    counted,
    deliver,
    error_line,
    overdue,
    requeued,
)
from sagakit.adapters.transport.kombu_redis import (
    open_item,
    pairs,
    priority,
    routed,
)
from sagakit.adapters.transport.redis_driver import DRIVER_ERRORS, driver_errors
from sagakit.ports.transport import Handler

if TYPE_CHECKING:
    from sagakit.adapters.transport.celery_redis import CeleryRedisTransport

logger = logging.getLogger("sagakit.adapters.transport.celery_redis")


MAX_WAIT = 1.0
"""Longest wait, in seconds, before the priority lists are looked at again."""


class Subscription(LoopSubscription):
    """One consumer: a take/restore loop and its handler tasks."""

    def __init__(
        self,
        transport: CeleryRedisTransport,
        queue: str,
        handler: Handler,
        *,
        prefetch: int,
        max_deliveries: int,
    ) -> None:
        super().__init__(transport, queue, handler, prefetch, max_deliveries)
        self._redis = transport
        self._name = transport.queue_name(queue)
        self._keys = transport.list_keys(self._name)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._orphans: list[tuple[str, bytes]] = []  # taken while cancelled

    async def _stop(self) -> None:
        """Stop consuming; unacknowledged messages go back to the queue.

        The loop and the in-flight handlers are cancelled, then their messages
        are restored from ``unacked`` to the end of the queue read next."""
        current = asyncio.current_task()
        loop_task = self.loop_task
        while (
            loop_task is not None and loop_task is not current and not loop_task.done()
        ):
            # again until it stops: redis-py's asyncio.wait_for can swallow one
            loop_task.cancel()
            await asyncio.wait({loop_task}, timeout=0.05)
        held = [tag for tag, task in self._inflight.items() if task is not current]
        tasks = [t for t in self._inflight.values() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with driver_errors(f"restoring the messages of {self._name}"):
            for tag, item in self._orphans:
                if tag:
                    held.append(tag)
                else:  # never in unacked, and never handled: dead-lettered
                    await self._deliver(tag, item)
            for tag in held:
                await self._redis.restore(tag)

    # --- the loop -------------------------------------------------------------

    async def run(self) -> None:
        transport = self._redis
        clock = asyncio.get_running_loop().time
        next_sweep = clock()
        while not self._cancelled:  # also stops if a cancellation got lost
            try:
                if clock() >= next_sweep:
                    await self._renew()
                    await self._restore_visible()
                    next_sweep = clock() + transport.restore_interval
                wait = min(max(next_sweep - clock(), 0.001), MAX_WAIT)
                free = self._prefetch - len(self._inflight)
                if free <= 0:  # until a handler is done
                    held = set(self._inflight.values())
                    await asyncio.wait(held, timeout=wait, return_when=FIRST_COMPLETED)
                    continue
                if not await self._take(free):
                    # wait until the queue has an entry, moving nothing (Redis
                    # takes fractional seconds; redis-py's annotation says int)
                    head, blmove = self._keys[0], transport._client.blmove
                    await blmove(head, head, wait, "RIGHT", "RIGHT")  # type: ignore[arg-type]
            except DRIVER_ERRORS as exc:
                extra = {"action": "consume_failed", "queue": self._queue}
                logger.warning(
                    "consumer loop failed, retrying",
                    extra={**extra, "error": error_line(exc)},
                )
                await asyncio.sleep(min(transport.restore_interval, MAX_WAIT))

    async def _take(self, count: int) -> bool:
        """Start handlers for up to ``count`` messages; whether there were any."""
        transport = self._redis
        keys = [transport.unacked_key, transport.unacked_index_key, *self._keys]
        pending = asyncio.ensure_future(
            transport._take_script(keys=keys, args=[count, time.time(), self._name])
        )
        try:
            taken: list[bytes] = await asyncio.shield(pending)
        except asyncio.CancelledError:  # cancel() restores what the script took
            while not pending.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({pending})
            if not pending.cancelled() and pending.exception() is None:
                self._orphans.extend(pairs(pending.result()))
            raise
        for tag, item in pairs(taken):
            self._start(tag, item)
        return bool(taken)

    async def _renew(self) -> None:
        """Refresh the time of the messages being handled (``ZADD XX``)."""
        now = time.time()
        held = {tag: now for tag in self._inflight}  # XX: untagged keys add nothing
        if held:
            await self._redis._client.zadd(self._redis.unacked_index_key, held, xx=True)

    async def _restore_visible(self) -> None:
        """Restore this queue's messages taken over ``visibility_timeout`` ago."""
        transport = self._redis
        client = transport._client
        ceiling = time.time() - transport.visibility_timeout
        found: list[Any] = await client.zrangebyscore(
            transport.unacked_index_key, "-inf", ceiling
        )
        tags = [tag.decode() for tag in found if tag.decode() not in self._inflight]
        if not tags:
            return
        stored: list[Any] = await client.hmget(transport.unacked_key, tags)
        for tag, raw in zip(tags, stored, strict=True):
            if routed(raw) == ("", self._name):
                logger.info(
                    "unacknowledged message restored",
                    extra={"action": "restored", "queue": self._queue},
                )
                await transport.restore(tag)

    def _start(self, tag: str, item: bytes) -> None:
        key = tag or f"untagged-{uuid.uuid4().hex}"  # an item not in unacked
        task = asyncio.create_task(self._settle(tag, item))
        self._inflight[key] = task

        def done(_: asyncio.Task[None]) -> None:
            if self._inflight.get(key) is task:  # a tag taken twice keeps its own
                del self._inflight[key]

        task.add_done_callback(done)

    # --- one message ----------------------------------------------------------

    async def _settle(self, tag: str, item: bytes) -> None:
        try:
            await self._deliver(tag, item)
        except asyncio.CancelledError:
            raise  # restored by cancel(), or by a sweep once visible again
        except Exception as exc:  # a driver error settling it: it stays unacked
            extra = {"action": "settle_failed", "queue": self._queue}
            logger.warning(
                "message left unacknowledged", extra={**extra, "error": error_line(exc)}
            )

    async def _deliver(self, tag: str, item: bytes) -> None:
        transport = self._redis
        opened = open_item(item, transport.limit)
        if isinstance(opened, str):
            raw = transport.kombu_message(self._name, item, {})
            await transport.dead_letter(self._queue, tag, raw, opened)
            return
        if not tag:
            reason = "kombu message without a delivery tag"
            await transport.dead_letter(self._queue, tag, opened.message, reason)
            return
        message = open_task(
            opened.body,
            content_type=opened.content_type,
            headers=opened.headers,
            limit=transport.limit,
        )
        deliveries = counted(opened.headers) + 1
        message = overdue(message, deliveries, self._max_deliveries)
        verdict = await deliver(
            self._handler, message, deliveries, self._max_deliveries
        )
        if verdict is ACK:
            await transport.ack(tag)
            return
        if verdict.reason is not None:
            await transport.dead_letter(
                self._queue, tag, opened.message, verdict.reason
            )
            return
        requeued(logger, self._queue, verdict.deliveries)
        headers = {**opened.headers, DELIVERIES_HEADER: verdict.deliveries}
        again = transport.retagged(self._name, opened.message, headers)
        await transport.ack(tag, transport.list_key(self._name, priority(again)), again)
