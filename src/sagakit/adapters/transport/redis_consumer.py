"""The consuming side of :class:`~sagakit.adapters.transport.redis.RedisTransport`
(one subscription: its read/claim loop and handler tasks) and the helpers
and field names both sides share. The behaviour is described in
:mod:`sagakit.adapters.transport.redis`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from sagakit._extras import needs_extra
from sagakit.adapters.transport.base import LoopSubscription
from sagakit.adapters.transport.delivery import (
    ACK,
    deliver,
    error_line,
    open_body,
    overdue,
)
from sagakit.adapters.transport.redis_driver import DRIVER_ERRORS
from sagakit.errors import TransportError
from sagakit.messaging.envelope import Envelope
from sagakit.ports.transport import Handler

if TYPE_CHECKING:
    from sagakit.adapters.transport.redis import RedisTransport

with needs_extra("RedisTransport needs redis", "redis"):
    from redis.exceptions import ResponseError
    from redis.typing import EncodableT, FieldT


logger = logging.getLogger("sagakit.adapters.transport.redis")

BODY_FIELD = b"body"
ID_FIELD = b"id"
REASON_FIELD = b"reason"
DEAD_AT_FIELD = b"dead_at"
QUEUE_FIELD = b"queue"
DELIVERIES_FIELD = b"deliveries"
END_OF_SCAN = b"0-0"
MAX_BLOCK = 1.0  # seconds a read blocks at most, far below socket timeouts

Fields = dict[bytes, bytes]


def outgoing(fields: Fields) -> dict[FieldT, EncodableT]:
    return {name: value for name, value in fields.items()}


class Subscription(LoopSubscription):
    """One consumer of the group: a read/claim loop and its handler tasks."""

    log = logger

    def __init__(
        self,
        transport: RedisTransport,
        queue: str,
        consumer: str,
        handler: Handler,
        *,
        prefetch: int,
        max_deliveries: int,
    ) -> None:
        super().__init__(transport, queue, handler, prefetch, max_deliveries)
        self._redis = transport
        self._key = transport.stream_key(queue)
        self.consumer = consumer

    async def _stop(self) -> None:
        """Stop reading; unacknowledged entries stay pending for others.

        The loop and the in-flight handlers are cancelled; their entries are
        claimed by another consumer once idle for ``claim_idle``. The consumer
        is then removed from the group if it owns no pending entries."""
        await self.stop_tasks()
        await self._forget()

    async def _forget(self) -> None:
        """``XGROUP DELCONSUMER`` when it would drop nothing (best effort)."""
        client = self._redis._client
        group = self._redis.group
        try:
            async with self._redis._turn():
                pending = await client.xpending_range(
                    self._key, group, "-", "+", 1, self.consumer
                )
                if not pending:
                    await client.xgroup_delconsumer(self._key, group, self.consumer)
        except DRIVER_ERRORS:
            logger.debug(
                "consumer left in the group",
                exc_info=True,
                extra={"action": "forget_failed", "queue": self._queue},
            )

    # --- the loop -------------------------------------------------------------

    async def run(self) -> None:
        transport = self._redis
        clock = asyncio.get_running_loop().time
        interval = transport.claim_interval
        next_claim = clock()
        cursor = END_OF_SCAN
        while not self._cancelled:  # also stops if a cancellation got lost
            try:
                if clock() >= next_claim:
                    await self._renew()
                    cursor = await self._reclaim(cursor)
                    next_claim = clock() + (interval if cursor == END_OF_SCAN else 0)
                wait = max(next_claim - clock(), 0.001)
                free = self.free
                if free <= 0:
                    await self.wait_for_slot(wait)
                    continue
                # a blocked read stays under the client's socket timeout
                # (5 s by default in redis-py 8), which would fail it
                block = min(wait, MAX_BLOCK)
                await self._read(free, block_ms=max(1, round(block * 1000)))
            except ResponseError as exc:
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    await self._pause(exc)
                    continue
                transport._groups.discard(self._key)  # the stream was deleted
                with contextlib.suppress(TransportError):
                    await transport._ensure(self._key)
            except DRIVER_ERRORS as exc:
                await self._pause(exc)

    async def _pause(self, exc: BaseException) -> None:
        error = error_line(exc)
        extra = {"action": "consume_failed", "queue": self._queue, "error": error}
        logger.warning("consumer loop failed, retrying", extra=extra)
        await asyncio.sleep(self._redis.claim_interval)

    async def _read(self, count: int, *, block_ms: int) -> None:
        async with self._redis._turn():
            response: Any = await self._redis._client.xreadgroup(
                self._redis.group,
                self.consumer,
                {self._key: ">"},
                count=count,
                block=block_ms,
            )
        for _stream, entries in response or []:
            for entry_id, fields in entries:
                self._start(entry_id, fields, deliveries=1)

    async def _renew(self) -> None:
        """Reset the idle time of the entries being handled."""
        if not self._inflight:
            return
        async with self._redis._turn():
            await self._redis._client.xclaim(
                self._key,
                self._redis.group,
                self.consumer,
                0,
                list(self._inflight),
                justid=True,
            )

    async def _reclaim(self, cursor: bytes) -> bytes:
        """Claim idle pending entries (one ``XAUTOCLAIM`` page); the next cursor."""
        free = self.free
        if free <= 0:
            return cursor
        client = self._redis._client
        group = self._redis.group
        async with self._redis._turn():
            response: Any = await client.xautoclaim(
                self._key,
                group,
                self.consumer,
                self._redis.claim_idle_ms,
                start_id=cursor,
                count=free,
            )
            claimed = [entry for entry in response[1] if entry and entry[1] is not None]
            found: list[Any] = []
            if claimed:
                async with client.pipeline(transaction=False) as pipe:
                    for entry_id, _fields in claimed:
                        pipe.xpending_range(
                            self._key, group, entry_id, entry_id, 1, self.consumer
                        )
                    found = await pipe.execute()
        for (entry_id, fields), pending in zip(claimed, found, strict=True):
            # not pending: acknowledged meanwhile; in flight: ours already
            if pending and entry_id not in self._inflight:
                self._start(
                    entry_id, fields, deliveries=int(pending[0]["times_delivered"])
                )
        next_cursor: bytes = response[0]
        return next_cursor

    def _start(self, entry_id: bytes, fields: Fields, *, deliveries: int) -> None:
        # cancelled or failing to settle: left pending, claimed later
        self.start(entry_id, self._deliver(entry_id, fields, deliveries))

    # --- one entry ------------------------------------------------------------

    def _open(self, fields: Fields, deliveries: int) -> Envelope | str:
        """The envelope, or why the entry goes to the DLQ without handling."""
        body = fields.get(BODY_FIELD)
        if body is None:
            return "entry has no body field"
        opened = open_body(body, self._redis.limit)
        return overdue(opened, deliveries, self._max_deliveries)

    async def _deliver(self, entry_id: bytes, fields: Fields, deliveries: int) -> None:
        transport = self._redis
        verdict = await deliver(
            self._handler,
            self._open(fields, deliveries),
            deliveries,
            self._max_deliveries,
        )
        if verdict is ACK:
            await transport.ack(self._key, entry_id)
        elif verdict.reason is not None:
            await transport.dead_letter(
                self._queue, entry_id, fields, verdict.reason, deliveries
            )
        else:
            logger.info(
                "handler failed, message left pending",
                extra={"action": "redelivered", "queue": self._queue},
            )
