"""Choreography: services react to each other's events; nobody orchestrates.

::

    bus = EventBus("billing", transport, store, choreographies=[parking_booking])

    @bus.on("booking.created")
    async def create_bill(event: BookingCreated, ctx: EventContext) -> None:
        ...
        await ctx.publish("bill.created", BillCreated(...))

    await bus.start()

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE billing.bill SET status = 'paid' ...")
        await bus.publish_on(conn, "bill.paid", paid, correlation_id=reference_no)

- :class:`EventBus` fans events out to every subscribed service over any
  :class:`~sagakit.ports.transport.Transport`, and runs each handler once per
  message id (an inbox in the event store).
- :class:`Choreography` and :class:`Flow` declare which events are progress,
  success, failure and compensation; the :class:`Tracker` keeps a status and a
  timeline per correlation id and flags choreographies that stop moving.
  Give every bus the choreographies its events belong to: a bus records
  progress only for the ones it knows.
- ``Choreography(..., version=N)`` numbers a choreography's conversation;
  events carry the version they belong to, and a bus that lacks it reports
  the event and leaves it to the broker instead of handling it (see
  :mod:`sagakit.choreography.versions`).

**Fan-out.** Each service consumes one queue of its own (``events.<service>``
by default). ``start`` writes a route per handled event type, ``(event type,
service) -> queue``, into the event store; ``publish`` reads the routes of
the event type and sends one copy of the envelope (same message id) to each
queue. Routes are durable and queues are declared on publish, so events for a
subscriber that is down wait in its queue. Every service that publishes or
subscribes must therefore share the database holding the routes (its
``sagakit_event_route`` table), while each may keep its business data where
it likes. A service that subscribes later does not receive older events.

**Deduplication.** Delivery is at least once. The bus checks the inbox
(consumer ``<service>.events``) before running a handler: a message id seen
before does not run it again. After the handler returns, the bus records the
message id in the inbox together with the events the handler published, then
publishes them; a duplicate delivery republishes those stored events (same
ids), so a crash between the two steps loses nothing. Events published from a
handler get ids derived from the consumed message id, so a re-run publishes
the same ids, which the next services drop as duplicates.

**At least once, or effect once.** If the process dies after the handler's
writes committed but before the inbox entry, the handler runs again: its
effects are at least once, so make it idempotent. To make them effect-once,
call :meth:`EventContext.mark_consumed` with the handler's own database
connection, inside its transaction, after its ``publish`` calls: the inbox
entry then commits (or rolls back) with the business writes, and a concurrent
duplicate fails its transaction instead of writing twice. That needs the
inbox in the same database (PostgreSQL or SQLite).

**Outbox.** :meth:`EventBus.publish` sends at once: a service that commits
its writes, then publishes, loses the event if it dies or the broker is down
in between. :meth:`EventBus.publish_on` closes that gap. It stages the event
(its encoded envelope) in the event store's outbox (``sagakit_event_outbox``)
on the caller's own connection, inside its open transaction (an asyncpg
connection for PostgreSQL, a ``sqlite3.Connection`` for SQLite), so the event
commits with the business writes or rolls back with them; a wrong connection
type is a :class:`~sagakit.errors.StoreError`, a store without an outbox a
:class:`~sagakit.errors.SagaError`. The in-memory store stages at once, with
``conn=None``. Every started bus, even one without handlers, runs a publisher
for the events its service staged (a bus never takes another service's): it
claims a batch with a hold (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), sends each one the way ``publish`` does
(routes, the tracker's ``published`` line, one copy per subscribed queue),
then deletes the batch. Several buses and processes of a service may share
the database: an event is with one claimer at a time, and a dead claimer's
events come back when its hold (``outbox_hold``, 30 s) expires. Broker and
store errors are retried with a backoff and logged, and the events stay
staged. The publisher polls every ``outbox_interval`` (0.2 s) and
``publish_on`` wakes it in its own process; events staged while no bus of the
service runs go out when one starts. ``await bus.publish_staged()`` runs
one pass (tests, scripts). Delivery is at least once: a crash between
sending and deleting sends the event again after the hold, with the same id,
so the subscribers' inboxes drop it. Claims use each bus's clock, so keep the
hold well above the clock skew between hosts.

Events published from handlers need no outbox: they are stored with the
inbox entry and sent again on a redelivery (see *Deduplication*).
"""

from __future__ import annotations

from sagakit.choreography.bus import EventBus
from sagakit.choreography.context import EventContext
from sagakit.choreography.definition import Choreography, Flow
from sagakit.choreography.tracker import Tracker
from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventOutcome,
    EventRecord,
    TrackedChoreography,
)

__all__ = [
    "Choreography",
    "ChoreographyStatus",
    "EventBus",
    "EventContext",
    "EventOutcome",
    "EventRecord",
    "Flow",
    "TrackedChoreography",
    "Tracker",
]
