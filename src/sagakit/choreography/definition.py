"""Declaring a choreography: its forward events, and what undoes each.

::

    parking_booking = Choreography(
        "parking_booking",
        steps=[
            Flow("booking.created", compensated_by="booking.failed"),
            Flow("bill.paid", compensated_by="bill.refunded"),
            Flow("parking.reserved", failed_by="parking.unavailable"),
            Flow("booking.confirmed"),
        ],
        timeout=60,
    )

Nobody runs a choreography: services react to each other's events. The
declaration only tells the tracker what the events mean:

- a **forward** event (``Flow.event``) is progress; the last step's event
  means the choreography **succeeded**;
- a **failure** event (``failed_by``) is what a service publishes instead of
  its forward event when it cannot go on: compensation starts;
- a **compensating** event (``compensated_by``) undoes a forward event that
  was seen. Once every forward event seen has its compensating event, the
  choreography is **compensated**; until then it is **compensating**;
- any of them refreshes the deadline: no event within ``timeout`` seconds and
  the tracker flags the choreography **stalled**.

``version`` (default 1) numbers the declaration, and its ``fingerprint``
covers the flows: see :mod:`sagakit.choreography.versions` for what a
version means to the services and what they do with an event of a version
they lack.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from sagakit.definition.fingerprint import digest
from sagakit.definition.versions import check_version
from sagakit.errors import DefinitionError
from sagakit.ports.event_store import ChoreographyStatus, Progress


@dataclass(frozen=True, slots=True)
class Flow:
    """One step of a choreography: the event that says it happened, the
    event that undoes it (if it can be undone) and the event a service
    publishes instead when it cannot happen (if it can fail)."""

    event: str
    compensated_by: str | None = None
    failed_by: str | None = None


class Choreography:
    """A named sequence of :class:`Flow` steps, its progress timeout and its
    ``version`` (default 1)."""

    def __init__(
        self,
        name: str,
        steps: Sequence[Flow],
        *,
        timeout: float = 60.0,
        version: int = 1,
    ) -> None:
        if not name:
            raise DefinitionError("a choreography needs a name")
        self.version = check_version(f"choreography {name!r}", version)
        if not steps:
            raise DefinitionError(f"choreography {name!r} has no steps")
        if not timeout > 0:
            raise DefinitionError(
                f"choreography {name!r}: timeout must be > 0, got {timeout!r}"
            )
        seen: set[str] = set()
        for flow in steps:
            for event in (flow.event, flow.compensated_by, flow.failed_by):
                if event is None:
                    continue
                if not event:
                    raise DefinitionError(f"choreography {name!r}: empty event name")
                if event in seen:
                    raise DefinitionError(
                        f"choreography {name!r}: event {event!r} appears twice"
                    )
                seen.add(event)
        self.name = name
        self.steps: tuple[Flow, ...] = tuple(steps)
        self.timeout = float(timeout)

    @cached_property
    def forward_events(self) -> tuple[str, ...]:
        return tuple(f.event for f in self.steps)

    @cached_property
    def failure_events(self) -> frozenset[str]:
        return frozenset(f.failed_by for f in self.steps if f.failed_by)

    @cached_property
    def compensating_events(self) -> frozenset[str]:
        return frozenset(f.compensated_by for f in self.steps if f.compensated_by)

    @cached_property
    def events(self) -> frozenset[str]:
        """Every event type of this choreography."""
        return (
            frozenset(self.forward_events)
            | self.failure_events
            | (self.compensating_events)
        )

    def status(self, seen: Iterable[str]) -> ChoreographyStatus:
        """The status after these event types were published or consumed."""
        done = frozenset(seen)
        if done & (self.failure_events | self.compensating_events):
            owed = {
                f.compensated_by
                for f in self.steps
                if f.compensated_by is not None and f.event in done
            }
            if owed <= done:
                return ChoreographyStatus.COMPENSATED
            return ChoreographyStatus.COMPENSATING
        if self.steps[-1].event in done:
            return ChoreographyStatus.SUCCEEDED
        return ChoreographyStatus.IN_PROGRESS

    @cached_property
    def fingerprint(self) -> str:
        """The structural fingerprint of the flows: each step's forward,
        compensating and failure events, in order (not the timeout)."""
        return digest([[f.event, f.compensated_by, f.failed_by] for f in self.steps])

    @cached_property
    def progress(self) -> Progress:
        """What the event store needs to track this choreography."""
        return Progress(
            self.name, self.timeout, self.status, self.version, self.fingerprint
        )

    def __repr__(self) -> str:
        version = f" v{self.version}" if self.version != 1 else ""
        return f"Choreography({self.name!r}{version}, {len(self.steps)} steps)"
