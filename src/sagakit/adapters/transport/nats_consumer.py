"""The consuming side of :class:`~sagakit.adapters.transport.nats.NatsTransport`
(one subscription: its pull loop over a durable pull consumer and its
handler tasks) and what both sides share: the driver's errors, the names of
streams and subjects, header values. The behaviour is described in
:mod:`sagakit.adapters.transport.nats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sagakit._extras import needs_extra
from sagakit.adapters.transport.base import LoopSubscription
from sagakit.adapters.transport.base import driver_errors as wrap_errors
from sagakit.adapters.transport.delivery import (
    ACK,
    deliver,
    error_line,
    open_body,
    overdue,
    requeued,
)
from sagakit.ports.transport import Handler

if TYPE_CHECKING:
    from sagakit.adapters.transport.nats import NatsTransport

with needs_extra("NatsTransport needs nats-py", "nats"):
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as CoreSubscription
    from nats.errors import Error as NatsError
    from nats.js.api import DEFAULT_PREFIX as JS_API

logger = logging.getLogger("sagakit.adapters.transport.nats")

DRIVER_ERRORS = (NatsError, OSError)
"""What nats-py raises (its JetStream errors derive from ``nats.errors.Error``;
``OSError`` covers sockets and ``TimeoutError``)."""
MAX_BLOCK = 1.0
"""Seconds one pull request stays open at most (so the request of a
cancelled subscription lingers on the server no longer than this)."""
EXPIRY_GRACE = 0.25
"""Seconds past a pull request's expiry after which the loop asks again even
if the server's expiry notice (status 408) did not come."""
STATUS_HEADER = "Status"
"""The header of a JetStream status message (no payload of the stream)."""
HEARTBEAT = "100"
MSG_ID_HEADER = "Nats-Msg-Id"
ID_HEADER = "x-sagakit-id"
"""The envelope id on a dead letter (``Nats-Msg-Id`` is not kept there)."""

_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def token(queue: str) -> str:
    """``queue`` as one subject token and stream-name part: letters, digits
    and ``-`` as they are, every other byte (``_`` included) as ``_xx`` hex,
    so two queues never share a token and ``_dlq`` never ends one."""
    if not queue:
        return "_"
    return "".join(chr(b) if b in _SAFE else f"_{b:02x}" for b in queue.encode("utf-8"))


def header_text(value: str) -> str:
    """A header value on one line (NATS headers cannot hold line breaks)."""
    return json.dumps(value)[1:-1]


def header_value(value: str | None) -> str:
    """The text :func:`header_text` wrote (``""`` when absent)."""
    if not value:
        return ""
    try:
        decoded = json.loads(f'"{value}"')
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


@contextlib.contextmanager
def driver_errors(action: str) -> Iterator[None]:
    """nats-py's errors as ``TransportError("NATS: <action> failed: ...")``."""
    with wrap_errors("NATS", action, DRIVER_ERRORS):
        yield


class Subscription(LoopSubscription):
    """One pull loop on the queue's durable pull consumer, with its handler
    tasks. The pull requests and what they bring go through nats-py's public
    core API: each request is published to the consumer's ``MSG.NEXT``
    subject with this subscription's own inbox as its reply subject, and
    the inbox's callback starts each message's handling the moment it comes."""

    log = logger

    def __init__(
        self,
        transport: NatsTransport,
        queue: str,
        stream: str,
        handler: Handler,
        *,
        prefetch: int,
        max_deliveries: int,
    ) -> None:
        super().__init__(transport, queue, handler, prefetch, max_deliveries)
        self._nats = transport
        self._next = f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{transport.group}"
        """Where a pull request goes (the consumer's ``MSG.NEXT`` subject)."""
        self._inbox = transport.client.new_inbox()
        self._sub: CoreSubscription | None = None
        self._held: dict[str, Msg] = {}
        """The messages being handled, by ack subject (one per delivery)."""
        self._open = 0
        """Messages the open pull request may still bring (0: none open)."""
        self._open_until = 0.0
        """When the open pull request has surely expired (loop time)."""
        self._request_over = asyncio.Event()
        """Set when the open request can bring no more (filled, or ended by
        the server)."""

    async def listen(self) -> None:
        """Subscribe to the inbox the pull requests' messages come to."""
        self._sub = await self._nats.client.subscribe(self._inbox, cb=self._came)

    async def _stop(self) -> None:
        """Stop pulling; the messages being handled are cancelled and given
        back (``NAK``) so another consumer gets them at once; messages a
        pull request still open brings in later come back after ``ack_wait``."""
        if self._sub is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await self._sub.unsubscribe()
        messages = list(self._held.values())
        await self.stop_tasks()
        for msg in messages:
            with contextlib.suppress(*DRIVER_ERRORS):
                await msg.nak()

    async def run(self) -> None:
        clock = asyncio.get_running_loop().time
        interval = self._nats.ack_wait / 3
        next_renew = clock() + interval
        while not self._cancelled:  # also stops if a cancellation got lost
            try:
                if clock() >= next_renew:
                    await self._renew()
                    next_renew = clock() + interval
                wait = max(next_renew - clock(), 0.001)
                if self._open <= 0 or clock() >= self._open_until:
                    free = self.free
                    if free <= 0:
                        await self.wait_for_slot(wait)
                        continue
                    await self._pull_request(free, clock())
                await self._until_over(min(wait, self._open_until - clock()))
            except DRIVER_ERRORS as exc:
                self._open = 0  # ask again once the connection is back
                error = error_line(exc)
                extra = {
                    "action": "consume_failed",
                    "queue": self._queue,
                    "error": error,
                }
                logger.warning("consumer loop failed, retrying", extra=extra)
                await asyncio.sleep(min(interval, MAX_BLOCK))

    async def _pull_request(self, batch: int, now: float) -> None:
        """Ask the server for up to ``batch`` messages, each sent as soon as
        it is there, for :data:`MAX_BLOCK` seconds: one request stays open
        while messages trickle in (nats-py's batched ``fetch`` would hold the
        first back until the batch filled), and a new one is made only when
        it is filled or has expired, sized to the slots free then."""
        request = {"batch": batch, "expires": int(MAX_BLOCK * 1e9)}
        self._request_over.clear()
        self._open = batch
        # the server's expiry (408) normally ends it; this is in case it is lost
        self._open_until = now + MAX_BLOCK + EXPIRY_GRACE
        await self._nats.client.publish(
            self._next, json.dumps(request).encode(), reply=self._inbox
        )

    async def _until_over(self, block: float) -> None:
        """Until the open request can bring no more, or ``block`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(block, 0.001)):
                await self._request_over.wait()

    async def _came(self, msg: Msg) -> None:
        """The inbox's callback: start handling a message the open request
        brought; a status message (the request expired, or the server has
        nothing for it) closes the request."""
        if self._cancelled:
            with contextlib.suppress(*DRIVER_ERRORS):
                await msg.nak()  # stopping: another consumer gets it at once
            return
        status = msg.headers.get(STATUS_HEADER) if msg.headers else None
        if status is None:
            self._open -= 1
            self._start(msg)
            if self._open <= 0:
                self._request_over.set()
        elif status != HEARTBEAT:
            self._open = 0  # 404, 408 or 409: this request brings no more
            self._request_over.set()

    async def _renew(self) -> None:
        """Tell the server the messages being handled are still in progress
        (their ``ack_wait`` starts again)."""
        for msg in list(self._held.values()):
            with contextlib.suppress(*DRIVER_ERRORS):
                await msg.in_progress()

    def _start(self, msg: Msg) -> None:
        # cancelled: given back by _stop; failing to settle: ack_wait brings it back
        self._held[msg.reply] = msg
        self.start(msg.reply, self._settle(msg))

    async def _settle(self, msg: Msg) -> None:
        try:
            await self._deliver(msg)
        finally:
            self._held.pop(msg.reply, None)

    async def _deliver(self, msg: Msg) -> None:
        deliveries = msg.metadata.num_delivered or 1
        opened = overdue(
            open_body(msg.data, self._nats.limit), deliveries, self._max_deliveries
        )
        verdict = await deliver(self._handler, opened, deliveries, self._max_deliveries)
        if verdict is ACK:
            await msg.ack()
        elif verdict.reason is not None:
            await self._nats.dead_letter(self._queue, msg, verdict.reason, deliveries)
            await msg.term()
        else:
            requeued(logger, self._queue, deliveries)
            await msg.nak(delay=self._nats.retry_delay or None)
