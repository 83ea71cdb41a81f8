"""The event bus: publish events, react to them, once per message id.

::

    bus = EventBus(
        "parking",
        transport,
        store,
        choreographies=[parking_booking],
        publishes={"parking.reserved": Reserved, "parking.unavailable": Unavailable},
    )

    @bus.on("bill.paid")
    async def reserve(event: BillPaid, ctx: EventContext) -> None:
        ...
        await ctx.publish("parking.reserved", Reserved(...))

    await bus.start()

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE ...")                 # business writes
        await bus.publish_on(conn, "parking.freed", freed, correlation_id=ref)

How fan-out, deduplication, effect-once handlers and the event outbox work
is described in :mod:`sagakit.choreography`. This module sets a bus up and
publishes; a delivered event is handled in :mod:`sagakit.choreography.consumer`,
and both route events and write timeline lines through
:mod:`sagakit.choreography.routing`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from pydantic import BaseModel

from sagakit.choreography.consumer import Consumer, Handler, handler_of
from sagakit.choreography.context import CAUSE_HEADER, SOURCE_HEADER, as_payload
from sagakit.choreography.definition import Choreography
from sagakit.choreography.outbox import StagedPublisher, check_options, new_owner
from sagakit.choreography.routing import Router
from sagakit.choreography.tracker import Tracker
from sagakit.choreography.versions import (
    CHOREOGRAPHY_HEADER,
    FINGERPRINT_HEADER,
    VERSION_HEADER,
    Declared,
    headers_of,
)
from sagakit.errors import DefinitionError, SagaError, StoreError
from sagakit.messaging.envelope import Envelope, encode, new_message_id
from sagakit.ports.clock import Clock, SystemClock
from sagakit.ports.event_store import (
    EventStore,
    EventStoreSource,
    StagedEvent,
    TransactionalOutbox,
)
from sagakit.ports.store import SagaStore
from sagakit.ports.transport import Subscription, Transport

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _as_event_store(store: EventStore | SagaStore) -> EventStore:
    """An event store as it is; a saga store's event store, on its connection."""
    if hasattr(store, "record_event"):
        return cast(EventStore, store)
    if isinstance(store, EventStoreSource):
        return store.event_store()
    raise StoreError(f"{type(store).__name__} keeps no choreography tables")


Publishes = Iterable[str] | Mapping[str, type[BaseModel] | None]
"""Event type names, or names mapped to their payload models (None: none)."""


def _published(service: str, publishes: Publishes) -> dict[str, type[BaseModel] | None]:
    """``publishes`` checked, as event type -> payload model (None: not given)."""
    where = f"event bus {service}: publishes"
    if isinstance(publishes, str | bytes) or not isinstance(publishes, Iterable):
        raise DefinitionError(
            f"{where}: expected a list of event types or a mapping of event "
            f"types to pydantic models, got {publishes!r}"
        )
    pairs: Iterable[tuple[object, object]] = (
        publishes.items()
        if isinstance(publishes, Mapping)
        else ((name, None) for name in publishes)
    )
    declared: dict[str, type[BaseModel] | None] = {}
    for event_type, model in pairs:
        if not isinstance(event_type, str) or not event_type:
            raise DefinitionError(f"{where}: {event_type!r} is not an event type name")
        if event_type in declared:
            raise DefinitionError(f"{where}: {event_type!r} appears twice")
        if model is not None and not (
            isinstance(model, type) and issubclass(model, BaseModel)
        ):
            raise DefinitionError(
                f"{where}: the payload of {event_type!r} must be a pydantic "
                f"model class, got {model!r}"
            )
        declared[event_type] = model
    return declared


class EventBus:
    """Publishes a service's events and runs its handlers from its queue.

    ``publishes`` declares the event types the service publishes: names, or
    names mapped to their payload models (None: no model), which the AsyncAPI
    document shows.
    Once declared, publishing any other type is a :class:`SagaError`, raised
    before anything is sent or staged; undeclared (the default), any type may
    be published.

    ``outbox_interval``, ``outbox_hold`` and ``outbox_batch`` tune the
    publisher of staged events (:meth:`publish_on`): how often it polls,
    how long a claim holds an event, how many one pass takes.
    """

    def __init__(
        self,
        service: str,
        transport: Transport | None = None,
        store: EventStore | SagaStore | None = None,
        *,
        choreographies: Iterable[Choreography] = (),
        publishes: Publishes = (),
        queue: str | None = None,
        clock: Clock | None = None,
        prefetch: int = 32,
        max_deliveries: int = 5,
        outbox_interval: float = 0.2,
        outbox_hold: float = 30.0,
        outbox_batch: int = 100,
    ) -> None:
        if not service:
            raise SagaError("an event bus needs a service name")
        self.service = service
        self.queue = queue or f"events.{service}"
        self.consumer = f"{service}.events"
        """The inbox's consumer name for this service's events."""
        self.clock: Clock = clock or SystemClock()
        self.prefetch = prefetch
        self.max_deliveries = max_deliveries
        self._transport = transport
        self._store = None if store is None else _as_event_store(store)
        self.declared = Declared(choreographies)
        """The choreographies (and versions) this bus's events belong to."""
        self._publishes = _published(service, publishes)
        self._handlers: dict[str, Handler] = {}
        self._router = Router(self)
        self._consumer = Consumer(self, self._router, self._handlers)
        self._subscription: Subscription | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._started = False
        self.owner = new_owner(service)
        """This bus's name when it claims staged events."""
        self._outbox_options = (outbox_interval, outbox_hold, outbox_batch)
        check_options(outbox_interval, outbox_hold, outbox_batch)
        self._publisher: StagedPublisher | None = None
        self.handled = 0
        self.duplicates = 0

    # -- set up ------------------------------------------------------------

    def on(self, event_type: str) -> Callable[[F], F]:
        """Register ``async fn(payload)`` or ``async fn(payload, ctx)``.

        The payload is validated into the first parameter's pydantic model
        (or passed as a dict); an invalid payload is dead-lettered. A handler
        that raises is retried by the broker up to ``max_deliveries`` times.
        """
        if event_type in self._handlers:
            raise SagaError(f"{self.service}: {event_type!r} already has a handler")

        def register(fn: F) -> F:
            self._handlers[event_type] = handler_of(event_type, fn)
            return fn

        return register

    @property
    def event_types(self) -> list[str]:
        """The event types this service handles."""
        return sorted(self._handlers)

    @property
    def publishes(self) -> dict[str, type[BaseModel] | None]:
        """The event types this service declared it publishes, each with its
        payload model (None: not given); empty: not declared."""
        return dict(self._publishes)

    def _check_published(self, event_type: str) -> None:
        if self._publishes and event_type not in self._publishes:
            raise SagaError(
                f"event bus {self.service} does not publish {event_type!r}: it "
                f"declared {', '.join(sorted(self._publishes))}; add it to "
                "EventBus(publishes=...)"
            )

    def attach(self, transport: Transport, store: EventStore | SagaStore) -> None:
        """Give a bus defined at import time its transport and store."""
        if self._started:
            raise SagaError(f"event bus {self.service} is started: stop() first")
        self._transport = transport
        self._store = _as_event_store(store)
        self._publisher = None  # the new store's outbox

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            raise SagaError(f"event bus {self.service} has no transport: attach()")
        return self._transport

    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise SagaError(f"event bus {self.service} has no store: attach()")
        return self._store

    @property
    def tracker(self) -> Tracker:
        return Tracker(self.store, clock=self.clock)

    @property
    def outbox_published(self) -> int:
        """Staged events this bus has sent and deleted."""
        return 0 if self._publisher is None else self._publisher.published

    def choreography_of(self, event_type: str) -> Choreography | None:
        """The declared choreography this event type belongs to, if any (its
        newest version: the one a new conversation starts on)."""
        return self.declared.newest_with(event_type)

    async def start(self, *, watch: float | None = None, outbox: bool = True) -> None:
        """Register this service's routes and consume its queue until ``stop``;
        publish the events the service staged (:meth:`publish_on`), even
        without handlers, unless ``outbox=False`` or the store has no outbox.

        With ``watch`` (seconds), also check for stalled choreographies that
        often (see :meth:`Tracker.watch`)."""
        if self._started:
            raise SagaError(f"event bus {self.service} is already started")
        if self._handlers:
            await self.store.subscribe(
                self.service, self.queue, self.event_types, now=self.clock.now()
            )
            self._subscription = await self.transport.consume(
                self.queue,
                self.handle,
                prefetch=self.prefetch,
                max_deliveries=self.max_deliveries,
            )
        if outbox and hasattr(self._store, "stage_event_on"):
            self._staged_publisher().start()
        if watch is not None:
            self._watcher = asyncio.create_task(self.tracker.watch(watch))
        self._started = True

    async def stop(self) -> None:
        """Stop consuming, checking and publishing staged events (the pass
        under way finishes first, for a few seconds at most)."""
        self._started = False
        if self._publisher is not None:
            await self._publisher.stop()
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None

    # -- publishing --------------------------------------------------------

    def event(
        self,
        event_type: str,
        payload: Any = None,
        *,
        correlation_id: str,
        message_id: str | None = None,
        choreography: str | None = None,
        caused_by: str | None = None,
        version: int | None = None,
        fingerprint: str | None = None,
    ) -> Envelope:
        """The envelope of an event of this service (not sent). Without
        ``choreography``, it belongs to the newest version of the declared
        choreography that has ``event_type``, if any; with it, to that
        choreography's ``version`` and ``fingerprint`` (those of the event a
        handler answers)."""
        headers = {SOURCE_HEADER: self.service}
        declared = None if choreography else self.choreography_of(event_type)
        if declared is not None:
            headers.update(headers_of(declared))
        elif choreography is not None:
            headers[CHOREOGRAPHY_HEADER] = choreography
            if version is not None:
                headers[VERSION_HEADER] = str(version)
            if fingerprint is not None:
                headers[FINGERPRINT_HEADER] = fingerprint
        if caused_by is not None:
            headers[CAUSE_HEADER] = caused_by
        return Envelope(
            id=message_id or new_message_id(),
            kind="event",
            type=event_type,
            correlation_id=correlation_id,
            payload=as_payload(event_type, payload),
            headers=headers,
            sent_at=self.clock.now(),
        )

    async def publish(
        self,
        event_type: str,
        payload: Any = None,
        *,
        correlation_id: str,
        message_id: str | None = None,
    ) -> Envelope:
        """Send an event to every service subscribed to ``event_type``.

        ``message_id`` makes a retried publish a duplicate the subscribers
        drop (default: a new id)."""
        self._check_published(event_type)
        event = self.event(
            event_type, payload, correlation_id=correlation_id, message_id=message_id
        )
        await self._router.send(event)
        return event

    async def publish_on(
        self,
        conn: Any,
        event_type: str,
        payload: Any = None,
        *,
        correlation_id: str,
        message_id: str | None = None,
    ) -> Envelope:
        """Stage an event in the outbox on ``conn``, the caller's own
        connection to the event store's database, inside its open
        transaction; it is published (as by :meth:`publish`) once that
        transaction commits, and never if it rolls back.

        ``conn`` is an asyncpg connection (PostgreSQL) or a
        ``sqlite3.Connection`` (SQLite); with the in-memory store, ``None``
        (staged at once). A running bus of this service publishes it soon
        after the commit, or when one starts: at least once, always with the
        returned envelope's id, so subscribers drop a repeat. A
        ``message_id`` staged already keeps the first event."""
        self._check_published(event_type)
        outbox = self._outbox()
        event = self.event(
            event_type, payload, correlation_id=correlation_id, message_id=message_id
        )
        staged = StagedEvent(
            message_id=event.id,
            service=self.service,
            event_type=event.type,
            correlation_id=event.correlation_id,
            body=encode(event),
            created_at=self.clock.now(),
        )
        await outbox.stage_event_on(conn, staged)
        if self._publisher is not None:
            self._publisher.expect(event.id)
        return event

    async def publish_staged(self) -> int:
        """Publish the events this service staged, one pass (up to
        ``outbox_batch``); returns how many were sent. For tests and scripts:
        a started bus does this on its own."""
        return await self._staged_publisher().publish_once()

    def _outbox(self) -> TransactionalOutbox:
        store = self.store
        if not hasattr(store, "stage_event_on"):
            raise SagaError(
                f"{type(store).__name__} has no event outbox to stage events in; "
                "use PostgreSQL, SQLite or the in-memory event store"
            )
        return cast(TransactionalOutbox, store)

    def _staged_publisher(self) -> StagedPublisher:
        if self._publisher is None:
            interval, hold, batch = self._outbox_options
            self._publisher = StagedPublisher(
                self.service,
                self._outbox(),
                self._router.announce,
                self._router.fan_out,
                now=self._now,
                owner=self.owner,
                poll_interval=interval,
                hold=hold,
                batch=batch,
            )
        return self._publisher

    def _now(self) -> float:
        return self.clock.now()  # self.clock may be replaced after __init__

    # -- consuming ---------------------------------------------------------

    async def handle(self, message: Envelope) -> None:
        """Handle one event (the consumer callback; also usable directly)."""
        await self._consumer.handle(message)
