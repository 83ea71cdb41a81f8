"""The event outbox of a service: events staged with
:meth:`~sagakit.choreography.EventBus.publish_on`, published once the
transaction that staged them has committed.

``publish_on`` writes the encoded envelope into the event store's outbox
(``sagakit_event_outbox``) on the caller's own connection, inside its open
transaction: the event commits with the business writes, or rolls back with
them. A :class:`StagedPublisher` (one per bus, run by ``bus.start()``) then:

1. claims up to ``batch`` of its service's staged events, in staging order,
   with a hold (``locked_by`` until ``now + hold``): other claimers skip them
   until the hold expires, so each is published by one claimer at a time,
   and a dead claimer's events come back after its hold;
2. sends each one on the bus's publish path (routes, the tracker's
   ``published`` line, one copy per subscribed queue), with the envelope's
   own id;
3. deletes the sent ones in one statement.

A crash between sending and deleting sends the event again after the hold,
same id: the subscribers' inboxes drop it. A broker or store error ends the
pass; the events stay staged (held by this publisher, which takes them again
on its next pass) and the pass is retried with a backoff, with one warning
line each time. The loop polls every ``poll_interval`` seconds, and
``publish_on`` in this process wakes it at once (then polls quickly for a
moment, until the staging transaction has committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

from sagakit.errors import SagaError, StoreError
from sagakit.messaging.envelope import Envelope, MalformedMessage, decode
from sagakit.ports.event_store import StagedEvent, TransactionalOutbox

logger = logging.getLogger(__name__)

Announce = Callable[[Envelope, bool], Awaitable[list[str]]]
"""``announce(event, track)``: the event's queues and, with ``track``, its
published line (skipped when an earlier attempt of this process wrote it)."""
FanOut = Callable[[Envelope, list[str]], Awaitable[None]]
"""``fan_out(event, queues)``: a copy to each queue."""

MAX_BACKOFF = 5.0
EAGER_WINDOW = 1.0  # seconds to poll quickly after a publish_on in this process
STOP_GRACE = 5.0  # seconds stop() lets a pass finish before cancelling it


def check_options(poll_interval: float, hold: float, batch: int) -> None:
    """A :class:`SagaError` for a poll interval, hold or batch out of range."""
    for name, value in (("interval", poll_interval), ("hold", hold)):
        if not value > 0:
            raise SagaError(f"outbox {name} must be > 0, got {value!r}")
    if batch < 1:
        raise SagaError(f"outbox batch must be >= 1, got {batch!r}")


def new_owner(service: str) -> str:
    """A claimer name unique to one bus: service, host, process, random."""
    return f"{service}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class StagedPublisher:
    """Publishes one service's staged events: :meth:`publish_once`, or the
    loop :meth:`run` between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        service: str,
        outbox: TransactionalOutbox,
        announce: Announce,
        fan_out: FanOut,
        *,
        now: Callable[[], float],
        owner: str,
        poll_interval: float = 0.2,
        hold: float = 30.0,
        batch: int = 100,
    ) -> None:
        check_options(poll_interval, hold, batch)
        self.service = service
        self.outbox = outbox
        self.owner = owner
        self.now = now
        self.poll_interval = poll_interval
        self.hold = hold
        self.batch = batch
        self.published = 0  # sent and deleted
        self._announce = announce
        self._fan_out = fan_out
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._expected: dict[str, float] = {}  # staged here: id -> poll fast until
        self._sent: dict[str, None] = {}  # sent, not deleted yet (ordered set)
        self._tracked: set[str] = set()  # their published line is written
        self._skipped: set[str] = set()  # cannot be decoded (reported once)

    @property
    def running(self) -> bool:
        return self._task is not None

    def expect(self, message_id: str) -> None:
        """An event was staged in this process: claim now, and poll quickly
        for a moment if its transaction has not committed yet."""
        if self._task is None:
            return
        until = asyncio.get_running_loop().time() + EAGER_WINDOW
        self._expected[message_id] = until
        self._wake.set()

    async def publish_once(self) -> int:
        """One pass: claim, send, delete. Returns how many events were sent.

        Raises the :class:`~sagakit.errors.StoreError` or
        :class:`~sagakit.errors.TransportError` that ended the pass; the
        events not sent stay staged."""
        async with self._lock:  # the loop and a caller take turns
            await self._forget()
            staged = await self.outbox.claim_staged(
                self.service,
                self.owner,
                now=self.now(),
                hold=self.hold,
                limit=self.batch,
            )
            sent = 0
            try:
                for row in staged:  # (_sent is empty: forgotten above)
                    event = self._decode(row)
                    if event is None:
                        continue
                    track = row.message_id not in self._tracked
                    queues = await self._announce(event, track)
                    self._tracked.add(row.message_id)
                    await self._fan_out(event, queues)
                    self._sent[row.message_id] = None
                    self._expected.pop(row.message_id, None)
                    sent += 1
            finally:
                with contextlib.suppress(StoreError):  # else on the next pass
                    await self._forget()
            return sent

    async def _forget(self) -> None:
        if not self._sent:
            return
        ids = list(self._sent)
        await self.outbox.forget_staged(ids)
        for message_id in ids:
            del self._sent[message_id]
            self._tracked.discard(message_id)
        self.published += len(ids)

    def _decode(self, row: StagedEvent) -> Envelope | None:
        try:
            return decode(row.body)
        except MalformedMessage as exc:
            if row.message_id not in self._skipped:
                self._skipped.add(row.message_id)
                logger.error(  # noqa: TRY400 - one line; the reason says it all
                    "staged event cannot be decoded; left in the outbox",
                    extra={
                        "action": "outbox_undecodable",
                        "service": self.service,
                        "message_id": row.message_id,
                        "error": str(exc),
                    },
                )
            return None

    # -- the loop ----------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`run` in a task until :meth:`stop`."""
        if self._task is not None:
            raise SagaError(f"the outbox of {self.service} is already published")
        self._wake, self._stop = asyncio.Event(), asyncio.Event()  # this loop's
        self._task = asyncio.create_task(
            self.run(), name=f"sagakit-event-outbox-{self.service}"
        )

    async def stop(self) -> None:
        """Let the current pass finish (up to a few seconds), then end."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        self._wake.set()
        _, pending = await asyncio.wait({task}, timeout=STOP_GRACE)
        for late in pending:  # stuck on the broker: its events stay staged
            late.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._expected.clear()

    async def run(self) -> None:
        """Publish staged events until :meth:`stop` (or cancelled); errors
        are retried with a backoff."""
        delay = self.poll_interval
        while not self._stop.is_set():
            self._wake.clear()
            try:
                sent = await self.publish_once()
            except SagaError as exc:  # StoreError, TransportError
                delay = min(max(delay, self.poll_interval) * 2, MAX_BACKOFF)
                logger.warning(
                    "staged events not published; retrying",
                    extra={
                        "action": "outbox_retry",
                        "service": self.service,
                        "error": str(exc),
                        "retry_in": delay,
                    },
                )
                await self._wait(self._stop, delay)  # publish_on: no sooner
                continue
            except Exception:
                delay = MAX_BACKOFF
                logger.exception(
                    "staged events not published; retrying",
                    extra={"action": "outbox_retry", "service": self.service},
                )
                await self._wait(self._stop, delay)
                continue
            delay = self.poll_interval
            if sent >= self.batch:  # more may be waiting: go on, but let
                await asyncio.sleep(0)  # others run (SQLite never yields)
                continue
            await self._wait(self._wake, self._next_poll())

    def _next_poll(self) -> float:
        now = asyncio.get_running_loop().time()
        self._expected = {k: t for k, t in self._expected.items() if t > now}
        if self._expected:  # staged here, not committed (or not seen) yet
            return min(self.poll_interval, 0.02)
        return self.poll_interval

    @staticmethod
    async def _wait(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
