"""The consuming side of an event bus: one delivered event through its
handler, once per message id.

:class:`Consumer` runs :meth:`~sagakit.choreography.EventBus.handle`: an
event without a handler is dropped (a route an older version of the service
left); one whose message id is in the service's inbox is a duplicate (its
stored outgoing events are sent again, in case the first delivery died
before sending them); one of a choreography version the bus lacks is refused
(``DefinitionUnavailable``: delivered again, then dead-lettered); a payload
that does not validate is dead-lettered. Otherwise the handler runs, the
message id goes into the inbox with the events it published (unless the
handler did that itself with ``mark_consumed``), and those events are sent.
Separate from :mod:`sagakit.choreography.bus`, which sets a bus up and
publishes; both send and record through the same
:class:`~sagakit.choreography.routing.Router`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from sagakit.choreography.context import (
    EventContext,
    decode_events,
    encode_events,
    payload_model,
)
from sagakit.choreography.routing import Router, logger
from sagakit.choreography.versions import first_refusal
from sagakit.errors import DefinitionUnavailable, DuplicateMessage, SagaError
from sagakit.messaging.envelope import Envelope, MalformedMessage
from sagakit.ports.event_store import EventOutcome

if TYPE_CHECKING:  # the bus makes its consumer
    from sagakit.choreography.bus import EventBus

_WITH_CONTEXT = 2  # handler(payload, ctx)


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered handler, with what was told about it once."""

    event_type: str
    fn: Callable[..., Awaitable[Any]]
    model: type[BaseModel] | None
    wants_context: bool


def handler_of(event_type: str, fn: Callable[..., Awaitable[Any]]) -> Handler:
    """``fn`` as the handler of ``event_type``; a ``SagaError`` unless async."""
    is_async = inspect.iscoroutinefunction(fn)
    if not is_async:
        raise SagaError(f"event handler {fn.__name__} must be async")
    arity = len(inspect.signature(fn).parameters)
    return Handler(event_type, fn, payload_model(fn), arity >= _WITH_CONTEXT)


class Consumer:
    """Runs the handlers of one bus (``handlers``: its registry, shared)."""

    def __init__(
        self, bus: EventBus, router: Router, handlers: dict[str, Handler]
    ) -> None:
        self._bus = bus
        self._router = router
        self._handlers = handlers

    async def handle(self, message: Envelope) -> None:
        """Handle one event (see :meth:`EventBus.handle`)."""
        bus = self._bus
        if message.kind != "event":
            raise MalformedMessage(
                f"{bus.service} got a {message.kind} on its event queue"
            )
        handler = self._handlers.get(message.type)
        if handler is None:  # a route left by an older version of the service
            logger.warning(
                "event without a handler dropped",
                extra={"action": "event_unhandled", "event": message.type},
            )
            return
        stored = await bus.store.inbox_reply(bus.consumer, message.id)
        if stored is not None:
            await self._duplicate(message, stored)
            return
        await self._check_version(message)
        record = self._router.record
        payload: Any = dict(message.payload)
        if handler.model is not None:
            try:
                payload = handler.model.model_validate(message.payload)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "payload"
                reason = f"{message.type}: {where}: {first['msg']}"
                await record(message, EventOutcome.FAILED, reason)
                raise MalformedMessage(reason) from None
        ctx = EventContext(bus, message)
        try:
            args = (payload, ctx) if handler.wants_context else (payload,)
            await handler.fn(*args)
        except DuplicateMessage:  # mark_consumed: another delivery got there first
            await self._duplicate(
                message, await bus.store.inbox_reply(bus.consumer, message.id)
            )
            return
        except Exception as exc:
            await record(message, EventOutcome.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        if not ctx.marked and not await bus.store.record_inbox(
            bus.consumer, message.id, encode_events(ctx.outgoing)
        ):  # handled concurrently by another consumer: its events win
            await self._duplicate(
                message, await bus.store.inbox_reply(bus.consumer, message.id)
            )
            return
        bus.handled += 1
        await record(message, EventOutcome.CONSUMED)
        for event in ctx.outgoing:
            await self._router.send(event)

    async def _check_version(self, message: Envelope) -> None:
        """Refuse (``DefinitionUnavailable``: delivered again, then
        dead-lettered) an event of a choreography version this bus lacks,
        with a warning and one ``waiting`` timeline line."""
        bus = self._bus
        why = bus.declared.reason(message)
        if why is None:
            return
        if await first_refusal(bus.store, bus.service, message, why):
            await self._router.record(message, EventOutcome.WAITING, why)
        raise DefinitionUnavailable(f"{bus.service}: {message.type}: {why}")

    async def _duplicate(self, message: Envelope, stored: bytes | None) -> None:
        self._bus.duplicates += 1
        logger.info(
            "duplicate event; its handler does not run again",
            extra={
                "action": "event_duplicate",
                "event": message.type,
                "message_id": message.id,
                "correlation_id": message.correlation_id,
            },
        )
        await self._router.record(message, EventOutcome.DUPLICATE)
        for event in decode_events(stored or b""):  # lost if we died before
            await self._router.fan_out(event)
