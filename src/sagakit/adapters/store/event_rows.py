"""Choreography rows to records and back, shared by the SQLite, PostgreSQL
and MySQL event stores.

The same mapping as :mod:`sagakit.adapters.store.rows` (columns by position,
JSON as compact text), for the event log and the tracked choreographies:
the records a row reads as, the row an event log line inserts, and the
definition a progress line carries. Separate from ``rows`` so that a saga
store's reads load none of it. The event port's classes are imported where
a row is read, not at the top: a saga store's reads (``sagakit list``)
import this module through ``reads.py`` and need no event port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sagakit.adapters.store.rows import Row

if TYPE_CHECKING:
    from sagakit.ports.event_store import EventRecord, Progress, TrackedChoreography


def tracked_choreography(row: Row) -> TrackedChoreography:
    """``correlation_id, name, status, started_at, updated_at, deadline,
    definition_version, fingerprint``."""
    from sagakit.ports.event_store import (  # noqa: PLC0415 - see the docstring
        ChoreographyStatus,
        TrackedChoreography,
    )

    return TrackedChoreography(
        correlation_id=row[0],
        name=row[1],
        status=ChoreographyStatus(row[2]),
        started_at=row[3],
        updated_at=row[4],
        deadline=row[5],
        definition_version=row[6],
        fingerprint=row[7],
    )


def event_record(row: Row) -> EventRecord:
    """``correlation_id, choreography, service, event_type, message_id,
    outcome, detail, recorded_at``."""
    from sagakit.ports.event_store import (  # noqa: PLC0415 - see the docstring
        EventOutcome,
        EventRecord,
    )

    return EventRecord(
        correlation_id=row[0],
        choreography=row[1],
        service=row[2],
        event_type=row[3],
        message_id=row[4],
        outcome=EventOutcome(row[5]),
        detail=row[6],
        recorded_at=row[7],
    )


def event_log_row(record: EventRecord) -> tuple[Any, ...]:
    """The event_log_insert parameters of ``record``."""
    return (
        record.correlation_id,
        record.choreography,
        record.service,
        record.event_type,
        record.message_id,
        record.outcome.value,
        record.detail,
        record.recorded_at,
    )


def definition_of(progress: Progress) -> tuple[int, str | None]:
    """The tracker row's ``definition_version, fingerprint`` for ``progress``."""
    return (progress.version, progress.fingerprint)


def is_progress(record: EventRecord) -> bool:
    """Duplicates and failures are not progress."""
    return record.outcome in ("published", "consumed")  # EventOutcome's values
