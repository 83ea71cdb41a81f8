"""A participant service: turns functions into command handlers.

::

    kitchen = Participant("kitchen", transport, store)

    @kitchen.handler("kitchen.create_ticket", retry=RetryPolicy(attempts=3))
    async def create_ticket(cmd: CreateTicket) -> TicketCreated: ...

    await kitchen.start()

Each command is handled at most once per message id: the reply is stored in
the participant's inbox with the message id, and a duplicate delivery (a
redelivery, or the orchestrator's outbox publishing twice) gets the stored
reply again without running the handler. The handler runs again only if the
process died after the handler returned but before its reply was stored; make
handlers idempotent or keep their effects in the same database transaction.

A reply goes to the queue its command names (``reply_to``); on a transport
that routes replies (:class:`~sagakit.ports.transport.ReplyRouting`), to
the own queue of the process that sent the command, when the command names
its key.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from sagakit.definition.retry import NO_RETRY, RetryPolicy
from sagakit.errors import SagaError, TransportError, error_info
from sagakit.messaging.envelope import Envelope, MalformedMessage, encode
from sagakit.messaging.handler import payload_dict
from sagakit.messaging.handler import payload_model as handler_payload_model
from sagakit.observability.observer import NOOP, Observer
from sagakit.participant.inbox import InboxGroup
from sagakit.ports.clock import Clock, SystemClock
from sagakit.ports.store import SagaStore
from sagakit.ports.transport import (
    REPLY_KEY_HEADER,
    ReplyRouting,
    Subscription,
    Transport,
)
from sagakit.runtime.retry import retry_outage, retry_store

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
_WITH_MESSAGE = 2  # handler(payload, message)


class CommandRejected(Exception):
    """Raise from a handler for a business refusal (card declined): the reply
    is a failure that the orchestrator must not retry."""


@dataclass(frozen=True, slots=True)
class _Handler:
    command: str
    fn: Callable[..., Any]
    model: type[BaseModel] | None
    wants_message: bool
    retry: RetryPolicy
    timeout: float | None


class Participant:
    """Handles the commands of one service from its queue (default: ``service``).

    ``observer`` (``sagakit.observability``) traces each handled command as a
    child of the orchestrator's command span; the reply carries it back.
    ``store_retry``: seconds an inbox store error is retried in place before
    the delivery fails; so is a reply the transport failed to publish.
    """

    def __init__(
        self,
        service: str,
        transport: Transport | None = None,
        store: SagaStore | None = None,
        *,
        queue: str | None = None,
        clock: Clock | None = None,
        prefetch: int = 32,
        observer: Observer | None = None,
        store_retry: float = 30.0,
    ) -> None:
        self.service = service
        self.observer: Observer = NOOP if observer is None else observer
        self.queue = queue or service
        self._transport = transport
        self._store = store
        self.clock: Clock = clock or SystemClock()
        self.prefetch = prefetch
        self.store_retry = store_retry
        self._handlers: dict[str, _Handler] = {}
        self._subscription: Subscription | None = None
        self._routing: tuple[Transport, ReplyRouting | None] | None = None
        self._inbox = InboxGroup(service)
        self._active = 0  # handle() calls in progress
        self.handled = 0
        self.duplicates = 0

    def handler(
        self,
        command: str,
        *,
        retry: RetryPolicy = NO_RETRY,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """Register ``fn(payload)`` or ``fn(payload, message)`` for ``command``.

        The payload is validated into the first parameter's pydantic model (or
        passed as a dict). The return value (a model, a dict or None) is the
        success reply; an exception is a failure reply after ``retry``.
        """
        if command in self._handlers:
            raise SagaError(f"{self.service}: {command!r} already has a handler")

        def register(fn: F) -> F:
            arity = len(inspect.signature(fn).parameters)
            self._handlers[command] = _Handler(
                command=command,
                fn=fn,
                model=handler_payload_model(fn, "handler", "command payload"),
                wants_message=arity >= _WITH_MESSAGE,
                retry=retry,
                timeout=timeout,
            )
            return fn

        return register

    @property
    def commands(self) -> list[str]:
        return sorted(self._handlers)

    def handler_function(self, command: str) -> Callable[..., Any]:
        """The function registered for ``command`` (``KeyError`` if none)."""
        return self._handlers[command].fn

    def payload_model(self, command: str) -> type[BaseModel] | None:
        """The model ``command``'s payload is validated into (None: a dict)."""
        return self._handlers[command].model

    def attach(self, transport: Transport, store: SagaStore) -> None:
        """Give a participant defined at import time its transport and inbox
        store (``sagakit participant`` does this from its options)."""
        self._transport = transport
        self._store = store

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            raise SagaError(f"participant {self.service} has no transport: attach()")
        return self._transport

    @property
    def store(self) -> SagaStore:
        if self._store is None:
            raise SagaError(f"participant {self.service} has no store: attach()")
        return self._store

    async def start(self) -> None:
        """Consume the service queue until ``stop``."""
        if self._subscription is not None:
            raise SagaError(f"participant {self.service} is already started")
        self._subscription = await self.transport.consume(
            self.queue, self.handle, prefetch=self.prefetch
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None

    async def handle(self, message: Envelope) -> None:
        """Handle one command (the consumer callback; also usable directly)."""
        self._active += 1
        try:
            await self._handle(message)
        finally:
            self._active -= 1

    async def _handle(self, message: Envelope) -> None:
        if message.kind != "command":  # dead-lettered at once, never retried
            raise MalformedMessage(
                f"{self.service} got a {message.kind} on its command queue"
            )
        stored = await self._store_call(
            lambda: self.store.inbox_reply(self.service, message.id)
        )
        if stored is not None:
            self.duplicates += 1
            logger.info(
                "duplicate command; resending the stored reply",
                extra={
                    "action": "command_duplicate",
                    "message_id": message.id,
                    "saga_id": message.saga_id,
                },
            )
            if stored:
                await self._send_reply(message, stored)
            return
        with self.observer.handling(self.service, message) as scope:
            reply = await self._run(message)
            error = reply.error or {}
            scope.ended(
                "succeeded" if reply.ok else "failed",
                description=f"{error.get('type')}: {error.get('message')}"
                if error
                else None,
            )
        body = encode(reply)
        # with other commands in hand, their entries share one commit
        alone = self._active <= 1
        recorded = await self._store_call(
            lambda: self._inbox.record(self.store, message.id, body, alone=alone)
        )
        if not recorded:
            # handled concurrently by another consumer: its reply wins
            stored = await self._store_call(
                lambda: self.store.inbox_reply(self.service, message.id)
            )
            body = stored or body
        self.handled += 1
        await self._send_reply(message, body)

    async def _send_reply(self, command: Envelope, body: bytes) -> None:
        """Send the reply ``body`` where ``command`` asks for it (nowhere
        if it names no ``reply_to``). A transport error is retried for
        ``store_retry`` seconds, like the inbox's: raised, it would fail
        the delivery, and a command whose replies kept failing while the
        broker was away would be dead-lettered, its stored reply never sent.
        """
        reply_to = command.reply_to
        if not reply_to:
            return
        transport = self.transport
        key = command.headers.get(REPLY_KEY_HEADER)
        routing = self._routing_of(transport) if key else None
        if key and routing is not None:
            publish = functools.partial(routing.publish_reply, reply_to, key, body)
        else:
            publish = functools.partial(transport.publish_raw, reply_to, body)
        try:
            await publish()
        except TransportError as exc:
            await retry_outage(
                publish,
                TransportError,
                clock=self.clock,
                limit=self.store_retry,
                logger=logger,
                message="reply publish failed; retrying",
                extra={"action": "reply_retry", "message_id": command.id},
                failed=exc,
            )

    def _routing_of(self, transport: Transport) -> ReplyRouting | None:
        """``transport`` if it routes replies (looked at once per transport)."""
        if self._routing is None or self._routing[0] is not transport:
            found: object = transport
            self._routing = (
                transport,
                found if isinstance(found, ReplyRouting) else None,
            )
        return self._routing[1]

    async def _store_call(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call`` the inbox store; retry a store error (a lost connection, a
        database restart) for ``store_retry`` seconds. Raising would fail the
        delivery: the transport counts it and, after a few quick failures
        while the database is away, dead-letters a valid command."""
        return await retry_store(
            call,
            clock=self.clock,
            limit=self.store_retry,
            logger=logger,
            message="inbox unavailable; retrying",
            extra={"action": "inbox_retry"},
        )

    async def _run(self, message: Envelope) -> Envelope:
        def failure(kind: str, text: str, *, retryable: bool) -> Envelope:
            return self._reply(
                message,
                ok=False,
                error={"type": kind, "message": text, "retryable": retryable},
            )

        handler = self._handlers.get(message.type)
        if handler is None:
            return failure(
                "UnknownCommand",
                f"{self.service} has no handler for {message.type!r}",
                retryable=False,
            )
        if handler.model is not None:
            try:
                payload: Any = handler.model.model_validate(message.payload)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "payload"
                return failure(
                    "InvalidPayload", f"{where}: {first['msg']}", retryable=False
                )
        else:
            payload = dict(message.payload)
        attempt = 0
        while True:
            attempt += 1
            try:
                value = await self._call(handler, payload, message)
                return self._reply(
                    message, ok=True, payload=_as_payload(handler.command, value)
                )
            except CommandRejected as exc:
                info = error_info(exc)
                return failure("CommandRejected", info.message, retryable=False)
            except Exception as exc:
                info = error_info(exc)
                if handler.retry.retries(exc) and attempt < handler.retry.attempts:
                    await self.clock.sleep(
                        handler.retry.delay(attempt, random.random())  # noqa: S311 - jitter
                    )
                    continue
                logger.info(
                    "command failed",
                    extra={
                        "action": "command_failed",
                        "command": message.type,
                        "saga_id": message.saga_id,
                        "error": str(info),
                    },
                )
                return failure(info.type, info.message, retryable=True)

    async def _call(self, handler: _Handler, payload: Any, message: Envelope) -> Any:
        args = (payload, message) if handler.wants_message else (payload,)
        if inspect.iscoroutinefunction(handler.fn):
            work = handler.fn(*args)
        else:
            work = asyncio.to_thread(handler.fn, *args)
        if handler.timeout is None:
            return await work
        async with asyncio.timeout(handler.timeout):
            return await work

    def _reply(
        self,
        message: Envelope,
        *,
        ok: bool,
        payload: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> Envelope:
        headers = dict(message.headers)
        self.observer.inject(headers)  # the handler's trace context goes back
        # a fixed id per command: duplicates of this reply are deduplicated too
        return message.reply(
            ok=ok,
            payload=payload,
            error=error,
            sent_at=self.clock.now(),
            id=f"{message.id}.reply",
            headers=headers,
        )


def _as_payload(command: str, value: Any) -> dict[str, Any]:
    return payload_dict(
        value,
        lambda kind: (
            f"handler of {command!r} returned {kind}; return a "
            "pydantic model, a dict or None"
        ),
    )
