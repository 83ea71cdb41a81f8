"""The transport port: publish envelopes to named queues and consume them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sagakit.messaging.envelope import Envelope

Handler = Callable[[Envelope], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A message a consumer could not take, kept with the reason."""

    queue: str
    body: bytes
    reason: str
    dead_at: float


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stop consuming; messages not yet acknowledged are redelivered."""


class Transport(Protocol):
    """At-least-once delivery of envelopes between services.

    ``publish`` returns once the broker has the message durably (publisher
    confirms, or the equivalent). ``consume`` calls ``handler`` for each
    message and acknowledges it when the handler returns. A message that
    cannot be decoded, or whose handler keeps raising after
    ``max_deliveries``, goes to the queue's dead-letter queue with a reason;
    the consumer keeps running.
    """

    async def publish(self, queue: str, message: Envelope) -> None: ...

    async def publish_raw(self, queue: str, body: bytes) -> None:
        """Publish bytes as they are (tests, replaying dead letters)."""

    async def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int = 32,
        max_deliveries: int = 5,
    ) -> Subscription: ...

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """Messages dead-lettered from ``queue``, oldest first (not removed)."""

    async def replay_dead_letters(self, queue: str, limit: int = 100) -> int:
        """Move up to ``limit`` dead letters of ``queue``, oldest first, back to
        ``queue`` (with a fresh delivery count) and remove them from its
        dead-letter queue; returns how many moved.

        At least once: each is republished before it is removed, so a crash
        in between leaves it in both places, never in neither. Replay after
        fixing what made the handler fail."""

    async def close(self) -> None: ...


@runtime_checkable
class BatchPublisher(Protocol):
    """A transport that can write many raw messages at once (optional)."""

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes]]
    ) -> list[Awaitable[Any]]:
        """Hand ``(queue, body)`` messages to the broker together, without
        waiting for them to be durable; each awaitable ends once the broker
        has its message (raising if it was refused), in any order. The
        outbox relay uses it to confirm many messages at once."""


@runtime_checkable
class QueueLookup(Protocol):
    """A transport that can tell whether a queue exists (optional): read-only
    commands (``sagakit dlq list``) use it to say a name is unknown instead
    of creating the queue."""

    async def has_queue(self, queue: str) -> bool:
        """Whether the broker has ``queue`` or its dead-letter queue, looked
        up without creating either."""


REPLY_KEY_HEADER = "x-sagakit-reply-key"
"""Envelope header of a command whose reply should reach the process that
sent it: that process's key (see :class:`ReplyRouting`). Replies carry it
back, as they carry every header of their command."""


@runtime_checkable
class ReplyRouting(Protocol):
    """A transport that can route a reply to the process awaiting it
    (optional): each such process has a queue of its own next to the shared
    reply queue, and what cannot reach it goes to the shared queue, where
    any process applies it."""

    async def consume_own_replies(
        self,
        queue: str,
        key: str,
        handler: Handler,
        *,
        prefetch: int = 32,
        max_deliveries: int = 5,
    ) -> Subscription:
        """Consume the replies of the reply queue ``queue`` sent to ``key``."""

    async def publish_reply(self, queue: str, key: str, body: bytes) -> None:
        """Publish reply bytes to ``key``'s own queue of ``queue``, or to
        ``queue`` itself when nobody consumes under ``key``."""

    async def forward_replies(self, queue: str, key: str) -> int:
        """Move the replies waiting for ``key`` (a process that left) to
        ``queue`` itself, unless it is consumed; returns how many moved."""
