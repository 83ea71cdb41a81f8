"""The tracker: where each choreography is, and which ones stopped moving.

Every :class:`~sagakit.choreography.EventBus` writes a timeline line for each
event it publishes or consumes (and for duplicates and failures), by
correlation id. Events of a declared :class:`Choreography` also update its
row: the status (in progress, succeeded, compensating, compensated) and a
deadline, the last progress plus the declared timeout. Nothing moves a
choreography past its deadline but a check: :meth:`Tracker.stalled` (or the
loop :meth:`Tracker.watch`) flags overdue ones ``stalled`` and logs a warning
for each; a later event of the choreography sets its status again.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sagakit.choreography.definition import Choreography
from sagakit.errors import SagaError, StoreError
from sagakit.ports.clock import Clock, SystemClock
from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventRecord,
    EventStore,
    TrackedChoreography,
)

logger = logging.getLogger(__name__)

_ACTIVE = (ChoreographyStatus.IN_PROGRESS, ChoreographyStatus.COMPENSATING)


class Tracker:
    """Reads the timeline and statuses of choreographies; flags stalled ones."""

    def __init__(self, store: EventStore, *, clock: Clock | None = None) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()

    async def record(
        self, record: EventRecord, declared: Choreography | None = None
    ) -> ChoreographyStatus | None:
        """Write a timeline line, with progress if it belongs to ``declared``.

        Tracking never fails an event's handling: a store error is logged."""
        try:
            status = await self.store.record_event(
                record, None if declared is None else declared.progress
            )
        except StoreError:
            logger.warning(
                "event not tracked",
                exc_info=True,
                extra={"action": "track_failed", "event": record.event_type},
            )
            return None
        if status is not None and status.terminal:
            logger.info(
                "choreography ended",
                extra={
                    "action": f"choreography_{status.value}",
                    "choreography": record.choreography,
                    "correlation_id": record.correlation_id,
                },
            )
        return status

    async def timeline(self, correlation_id: str) -> list[EventRecord]:
        return await self.store.timeline(correlation_id)

    async def get(self, correlation_id: str) -> TrackedChoreography | None:
        """The choreography's row, with ``stalled`` shown as soon as its
        deadline has passed (even before a check flagged it)."""
        tracked = await self.store.tracked(correlation_id)
        if tracked is None:
            return None
        if tracked.status in _ACTIVE and tracked.deadline < self.clock.now():
            return replace(tracked, status=ChoreographyStatus.STALLED)
        return tracked

    async def status(self, correlation_id: str) -> ChoreographyStatus | None:
        tracked = await self.get(correlation_id)
        return None if tracked is None else tracked.status

    async def check(self, *, limit: int = 100) -> list[TrackedChoreography]:
        """Flag overdue choreographies ``stalled``; returns those flagged now
        (each by one checker only), with a warning logged for each."""
        flagged = await self.store.mark_stalled(now=self.clock.now(), limit=limit)
        for tracked in flagged:
            logger.warning(
                "choreography stalled",
                extra={
                    "action": "choreography_stalled",
                    "choreography": tracked.name,
                    "correlation_id": tracked.correlation_id,
                    "idle": round(self.clock.now() - tracked.updated_at, 3),
                },
            )
        return flagged

    async def stalled(self, *, limit: int = 100) -> list[str]:
        """Correlation ids of every stalled choreography, after a check."""
        await self.check(limit=limit)
        rows = await self.store.list_tracked(
            status=ChoreographyStatus.STALLED, limit=limit
        )
        return [t.correlation_id for t in rows]

    async def watch(self, interval: float) -> None:
        """Check every ``interval`` seconds until cancelled; a failing check
        is logged and tried again next time."""
        if interval <= 0:
            raise SagaError(f"watch interval must be > 0, got {interval!r}")
        while True:
            try:
                await self.check()
            except SagaError:
                logger.warning(
                    "stalled check failed", exc_info=True, extra={"action": "watch"}
                )
            await self.clock.sleep(interval)
