"""What every transport adapter shares: opening and closing, the checks of
``consume``, the set of live subscriptions, and wrapping driver errors.

An adapter subclasses :class:`BaseTransport` and implements ``_subscribe``
(start consuming, return a :class:`BaseSubscription`) and ``_disconnect``;
its subscriptions subclass :class:`BaseSubscription` and implement ``_stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Hashable, Iterator
from typing import Any

from sagakit.adapters.transport.delivery import error_line
from sagakit.errors import TransportError
from sagakit.ports.transport import Handler


class BaseSubscription:
    """A running consumer; ``cancel`` stops it once."""

    def __init__(self, transport: BaseTransport) -> None:
        self._transport = transport
        self._cancelled = False

    async def cancel(self) -> None:
        """Stop consuming; messages not yet acknowledged are redelivered."""
        if self._cancelled:
            return
        self._cancelled = True
        self._transport._subscriptions.discard(self)
        await self._stop()

    async def _stop(self) -> None:
        raise NotImplementedError


class LoopSubscription(BaseSubscription):
    """A subscription whose one loop (``loop_task``) takes messages of
    ``queue`` and starts a handler task for each, at most ``prefetch`` at a
    time (Redis Streams, NATS): the loop asks :attr:`free` how many it may
    take, waits with :meth:`wait_for_slot` when none, and hands each message
    to :meth:`start`; :meth:`stop_tasks` cancels the loop and the handlers."""

    log = logging.getLogger("sagakit.adapters.transport")
    """Where a message left unsettled is logged (each adapter its own)."""

    def __init__(
        self,
        transport: BaseTransport,
        queue: str,
        handler: Handler,
        prefetch: int,
        max_deliveries: int,
    ) -> None:
        super().__init__(transport)
        self._queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._max_deliveries = max_deliveries
        self.loop_task: asyncio.Task[None] | None = None
        self._inflight: dict[Any, asyncio.Task[None]] = {}
        """The handler task of each message being handled, by its key."""
        self._slot_freed = asyncio.Event()

    @property
    def free(self) -> int:
        """How many more messages may be handled at once."""
        return self._prefetch - len(self._inflight)

    async def wait_for_slot(self, seconds: float) -> None:
        """Until a handler ends, or ``seconds`` pass."""
        self._slot_freed.clear()
        # not wait_for: on 3.11 it can swallow a cancellation
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._slot_freed.wait()

    def start(self, key: Hashable, handling: Coroutine[Any, Any, None]) -> None:
        """Run ``handling`` (handle and settle one message) as the task of
        ``key``; an error settling it is logged, and the message is left to
        the broker's redelivery."""
        task = asyncio.create_task(self._settled(handling))
        self._inflight[key] = task

        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(key, None)
            self._slot_freed.set()

        task.add_done_callback(done)

    async def _settled(self, handling: Coroutine[Any, Any, None]) -> None:
        try:
            await handling
        except asyncio.CancelledError:
            raise  # cancelled by stop_tasks: the broker delivers it again
        except Exception as exc:  # a driver error settling it
            error = error_line(exc)
            extra = {"action": "settle_failed", "queue": self._queue, "error": error}
            self.log.warning("message left unacknowledged", extra=extra)

    async def stop_tasks(self) -> None:
        """Cancel the loop and the handlers (not the calling task) and wait."""
        current = asyncio.current_task()
        tasks = [t for t in (self.loop_task, *self._inflight.values()) if t]
        tasks = [t for t in tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class BaseTransport:
    """The lifecycle half of the :class:`~sagakit.ports.transport.Transport` port."""

    name = "transport"
    """How errors name this transport (``the <name> transport is closed``)."""

    def __init__(self) -> None:
        self._subscriptions: set[BaseSubscription] = set()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"the {self.name} transport is closed")

    async def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int = 32,
        max_deliveries: int = 5,
    ) -> BaseSubscription:
        self._check_open()
        if prefetch < 1 or max_deliveries < 1:
            raise TransportError("prefetch and max_deliveries must be >= 1")
        subscription = await self._subscribe(queue, handler, prefetch, max_deliveries)
        self._subscriptions.add(subscription)
        return subscription

    async def _subscribe(
        self, queue: str, handler: Handler, prefetch: int, max_deliveries: int
    ) -> BaseSubscription:
        raise NotImplementedError

    async def close(self) -> None:
        """Cancel the subscriptions, then let go of the connection (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            for subscription in list(self._subscriptions):
                with contextlib.suppress(TransportError):
                    await subscription.cancel()
        finally:
            await self._disconnect()

    async def _disconnect(self) -> None:
        return None


@contextlib.contextmanager
def driver_errors(
    broker: str, action: str, errors: tuple[type[BaseException], ...]
) -> Iterator[None]:
    """Turn the driver's ``errors`` into ``TransportError("<broker>: <action>
    failed: <one line>")`` with the driver's exception as ``__cause__``."""
    try:
        yield
    except errors as exc:
        raise TransportError(f"{broker}: {action} failed: {error_line(exc)}") from exc
