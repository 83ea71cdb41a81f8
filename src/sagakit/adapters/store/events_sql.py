"""What the PostgreSQL and MySQL event stores write the same way: claims of
staged events and the flagging of stalled choreographies, each one named
write of the dialect's ``queries.sql`` with the same arguments. They differ
in how a write runs and is counted (:meth:`ServerEvents.write`), as for
sagas (:mod:`.sagas_sql`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagakit.adapters.store import event_rows
from sagakit.adapters.store.reads import ChoreographyReads, D
from sagakit.ports.event_store import StagedEvent, TrackedChoreography


class ServerEvents(ChoreographyReads[D]):
    """Event-store writes over ``database``'s named queries."""

    async def write(self, about: str, query: str, *args: Any) -> Sequence[Any]:
        """The rows of the named write, committed."""
        raise NotImplementedError

    async def claim_staged(
        self, service: str, owner: str, *, now: float, hold: float, limit: int = 100
    ) -> list[StagedEvent]:
        about = f"claiming events staged by {service!r}"
        args = (service, owner, now, hold, limit)
        found = await self.write(about, "event_outbox_claim", *args)
        return [StagedEvent(*r) for r in found]  # the columns, in order

    async def mark_stalled(
        self, *, now: float, limit: int = 100
    ) -> list[TrackedChoreography]:
        found = await self.write(
            "flagging stalled choreographies", "choreography_mark_stalled", now, limit
        )
        return sorted(
            map(event_rows.tracked_choreography, found), key=lambda t: t.deadline
        )
