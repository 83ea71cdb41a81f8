"""Publishing what several tasks publish at the same moment together.

With batching on (``RabbitTransport.batch = True`` or
``amqp://...?batch=true``), each ``publish`` joins a queue of messages that
one sending loop writes together, through ``publish_many``: messages to the
same queue become one broker message (a batch, see
:mod:`sagakit.messaging.batch`) and everything goes out in one socket write.
Each publisher still waits for the broker's confirm of what carries its
message. A participant whose handlers finish together so sends their replies
in one message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sagakit.errors import TransportError

Destination = tuple[str, str]
"""Where a message goes: an exchange (``""``: the default one) and a routing key."""
SendMany = Callable[
    [Sequence[tuple[Destination, bytes]]], Awaitable[list[Awaitable[Any]]]
]


class Coalescer:
    """One sending loop for the publishes of one transport."""

    def __init__(self, send_many: SendMany) -> None:
        self._send_many = send_many
        self._waiting: list[tuple[Destination, bytes, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def publish(self, to: Destination, body: bytes) -> None:
        """Publish ``body`` to ``to`` with whatever else is published now;
        returns on the broker's confirm."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((to, body, done))
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self._wake.set()
        await done

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    confirms = await self._send_many([(n, b) for n, b, _ in batch])
                except Exception as exc:  # each publisher gets it; the loop goes on
                    error = exc
                    if not isinstance(exc, TransportError):
                        error = TransportError(f"publishing failed: {exc!r}")
                        error.__cause__ = exc
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(error)
                    continue
                for (_, _, done), confirm in zip(batch, confirms, strict=True):
                    settle_with(done, asyncio.ensure_future(confirm))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, _, done in self._waiting:
            if not done.done():
                done.set_exception(TransportError("the transport was closed"))
        self._waiting.clear()


def settle_with(
    done: asyncio.Future[None],
    confirm: asyncio.Future[Any],
    failed: Callable[[BaseException], BaseException] | None = None,
) -> None:
    """End ``done`` as ``confirm`` ends (unless its publisher gave up): its
    error as ``failed`` turns it, if given (a callback: no task per message)."""

    def settle(confirmed: asyncio.Future[Any]) -> None:
        if done.done():
            return
        if confirmed.cancelled():
            done.cancel()
        elif (exc := confirmed.exception()) is not None:
            done.set_exception(exc if failed is None else failed(exc))
        else:
            done.set_result(None)

    confirm.add_done_callback(settle)
