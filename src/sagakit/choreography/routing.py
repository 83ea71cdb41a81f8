"""Where a bus's events go, and the timeline line each one leaves.

:class:`Router` is the part of an :class:`~sagakit.choreography.EventBus`
that publishing, consuming and the event outbox share: it sends an event
to the queue of every service its type is routed to (the routes are in the
event store: ``subscribers``), writes its ``published`` line, and adds the
timeline lines of what happened to an event (consumed, failed, duplicate,
waiting) with the progress of its declared choreography. It reads the
bus's public attributes at each call (``store``, ``transport``, ``clock``,
``declared``, ``tracker``), so a bus attached or given a clock later routes
through those. Separate from :mod:`sagakit.choreography.bus` so that the
consuming side (:mod:`sagakit.choreography.consumer`) and the staged
publisher (:mod:`sagakit.choreography.outbox`) depend on this and not on
the bus's private members.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sagakit.choreography.versions import CHOREOGRAPHY_HEADER
from sagakit.messaging.envelope import Envelope
from sagakit.ports.event_store import EventOutcome, EventRecord

if TYPE_CHECKING:  # the bus makes its router
    from sagakit.choreography.bus import EventBus

# the bus's logger: these lines were the bus's before this module was split off
logger = logging.getLogger("sagakit.choreography.bus")


class Router:
    """Sends one bus's events to their subscribers and records their lines."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    async def send(self, event: Envelope) -> None:
        """Route ``event``: its ``published`` line, then a copy to each queue."""
        await self.fan_out(event, await self.announce(event))

    async def announce(self, event: Envelope, track: bool = True) -> list[str]:
        """The queues of ``event``; with ``track``, its published line too."""
        queues = await self._bus.store.subscribers(event.type)
        if track:
            if not queues:
                logger.warning(
                    "event has no subscribers",
                    extra={"action": "event_unrouted", "event": event.type},
                )
            detail = f"to {', '.join(queues)}" if queues else "no subscribers"
            await self.record(event, EventOutcome.PUBLISHED, detail)
        return queues

    async def fan_out(self, event: Envelope, queues: list[str] | None = None) -> None:
        """A copy of ``event`` to each of ``queues`` (default: its routes)."""
        bus = self._bus
        if queues is None:
            queues = await bus.store.subscribers(event.type)
        for queue in queues:
            await bus.transport.publish(queue, event)

    async def record(
        self, event: Envelope, outcome: EventOutcome, detail: str | None = None
    ) -> None:
        """Add a timeline line (and progress, for a declared choreography)."""
        bus = self._bus
        name = event.headers.get(CHOREOGRAPHY_HEADER)
        declared = None if outcome is EventOutcome.WAITING else bus.declared.of(event)
        record = EventRecord(
            correlation_id=event.correlation_id,
            choreography=name or (None if declared is None else declared.name),
            service=bus.service,
            event_type=event.type,
            message_id=event.id,
            outcome=outcome,
            recorded_at=bus.clock.now(),
            detail=detail,
        )
        await bus.tracker.record(record, declared)
