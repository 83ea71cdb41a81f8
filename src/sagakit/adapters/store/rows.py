"""Rows to records and back, shared by the SQLite and PostgreSQL stores.

Both dialects select the same columns in the same order, and both drivers'
rows index by position (``sqlite3`` tuples, ``asyncpg.Record``), so one
mapping serves both. JSON columns travel as compact text either way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus
from sagakit.errors import (
    ConcurrencyError,
    DuplicateMessage,
    SagaAlreadyExists,
    SagaNotFound,
    StoreError,
)
from sagakit.ports import store as store_port  # its entries load when made
from sagakit.ports.store import SagaRecord

if TYPE_CHECKING:  # loaded by the rows of workflows and events: a saga store's
    # reads (``sagakit list``) need neither port, nor a write's entries
    from sagakit.ports.entry import HistoryEntry, InboxEntry, OutboxMessage
    from sagakit.ports.event_store import EventRecord, Progress, TrackedChoreography
    from sagakit.ports.workflow_store import WorkflowHistoryEntry, WorkflowRecord


class Row(Protocol):
    """A row by position: a ``sqlite3`` tuple or an ``asyncpg.Record``."""

    def __getitem__(self, index: int, /) -> Any: ...

    def __len__(self) -> int: ...


def _unencodable(value: Any) -> Any:
    """What :func:`dumps` does with a value JSON has no form for."""
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
_ENCODER: Any = None
"""The C encoder of :mod:`json` made once with the options :func:`dumps`
uses (``json.dumps`` with options other than the defaults builds a
``JSONEncoder`` and a C encoder per call); ``None`` without the C module.
It skips ``check_circular`` (whose dict of markers a failed call would
leave dirty): a value that holds itself ends in ``RecursionError``. Floats
come out as ``json.dumps`` writes them, NaN and Infinity included."""
if _MAKE_ENCODER is not None:
    _ENCODER = _MAKE_ENCODER(
        None,  # markers: no circular check
        _unencodable,
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,  # indent
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )


def dumps(value: Any) -> str:
    """Compact JSON text for a JSON column."""
    if _ENCODER is None:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return "".join(_ENCODER(value, 0))


def dumps_or_none(value: Any) -> str | None:
    return None if value is None else dumps(value)


def loads_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def error_json(error: ErrorInfo | None) -> str | None:
    return None if error is None else dumps(error.to_dict())


def history_json(history: Sequence[HistoryEntry]) -> str:
    """History lines as one JSON array of objects keyed by the
    ``sagakit_step_history`` columns (PostgreSQL and MySQL unpack it)."""
    return dumps(
        [
            {
                "saga_id": h.saga_id,
                "step": h.step,
                "kind": h.kind,
                "attempt": h.attempt,
                "outcome": h.outcome,
                "result": h.result,
                "error": None if h.error is None else h.error.to_dict(),
                "started_at": h.started_at,
                "finished_at": h.finished_at,
            }
            for h in history
        ]
    )


def history_rows(history: Sequence[HistoryEntry], *more: Any) -> list[tuple[Any, ...]]:
    """History lines as the rows SQLite and MySQL insert: ``saga_id, step,
    kind, attempt, outcome, result, error, started_at, finished_at``, then
    ``more`` (SQLite: the saved saga's created_at and id)."""
    return [
        (
            h.saga_id,
            h.step,
            h.kind,
            h.attempt,
            h.outcome,
            dumps_or_none(h.result),
            error_json(h.error),
            h.started_at,
            h.finished_at,
            *more,
        )
        for h in history
    ]


def workflow_history_rows(
    history: Sequence[WorkflowHistoryEntry],
) -> list[tuple[Any, ...]]:
    """Workflow history lines as the rows SQLite and MySQL insert: ``app,
    instance_id, step, attempt, outcome, detail, error, recorded_at``."""
    return [
        (
            h.app,
            h.instance_id,
            h.step,
            h.attempt,
            h.outcome,
            dumps_or_none(h.detail),
            h.error,
            h.recorded_at,
        )
        for h in history
    ]


def workflow_history_json(history: Sequence[WorkflowHistoryEntry]) -> str:
    """Workflow history lines as one JSON array of objects keyed by the
    ``sagakit_workflow_history`` columns they fill."""
    return dumps(
        [
            {
                "step": h.step,
                "attempt": h.attempt,
                "outcome": h.outcome,
                "detail": h.detail,
                "error": h.error,
                "recorded_at": h.recorded_at,
            }
            for h in history
        ]
    )


# -- sagas -------------------------------------------------------------------


_CLAIMED = 13
"""Columns of a saga row; a claim's rows add the previous owner."""


def saga_record(row: Row) -> SagaRecord:
    """``saga_id, saga_name, status, version, idempotency_key, context, state,
    created_at, updated_at, deadline, definition_version, fingerprint,
    waiting`` and, from a claim, ``previous_owner``."""
    return SagaRecord(
        saga_id=row[0],
        saga_name=row[1],
        status=SagaStatus(row[2]),
        version=row[3],
        idempotency_key=row[4],
        context=json.loads(row[5]),
        state=SagaState.from_dict(json.loads(row[6])),
        created_at=row[7],
        updated_at=row[8],
        deadline=row[9],
        definition_version=row[10],
        fingerprint=row[11],
        waiting=row[12],
        previous_owner=row[13] if len(row) > _CLAIMED else None,
    )


def new_saga(record: SagaRecord) -> tuple[Any, ...]:
    """What a create inserts first, as both dialects bind it: ``saga_id,
    saga_name, status, version, idempotency_key, context, state,
    failed_step, created_at, updated_at``."""
    return (
        record.saga_id,
        record.saga_name,
        record.status.value,
        record.version,
        record.idempotency_key,
        dumps(record.context),
        dumps(record.state.to_dict()),
        record.state.failed_step,
        record.created_at,
        record.updated_at,
    )


def saga_changes(record: SagaRecord) -> tuple[Any, ...]:
    """What a save changes, as both dialects bind it: ``status, version,
    context, state, failed_step, updated_at``."""
    return (
        record.status.value,
        record.version,
        dumps(record.context),
        dumps(record.state.to_dict()),
        record.state.failed_step,
        record.updated_at,
    )


def history_entry(row: Row) -> HistoryEntry:
    """``saga_id, step, kind, attempt, outcome, result, error, started_at,
    finished_at``."""
    return store_port.HistoryEntry(
        saga_id=row[0],
        step=row[1],
        kind=row[2],
        attempt=row[3],
        outcome=row[4],
        result=loads_or_none(row[5]),
        error=None if row[6] is None else ErrorInfo.from_dict(json.loads(row[6])),
        started_at=row[7],
        finished_at=row[8],
    )


def outbox_message(row: Row) -> OutboxMessage:
    """``message_id, destination, body, saga_id, available_at``."""
    return store_port.OutboxMessage(
        message_id=row[0],
        destination=row[1],
        body=bytes(row[2]),
        saga_id=row[3],
        available_at=row[4],
    )


def saga_not_found(saga_id: str) -> SagaNotFound:
    return SagaNotFound(f"saga {saga_id} does not exist")


def saga_exists(saga_id: str, status: str | None) -> SagaAlreadyExists:
    """The error of creating ``saga_id`` again; ``status`` is the existing
    instance's (None: it could not be read)."""
    known = "" if status is None else f" (status {status})"
    return SagaAlreadyExists(
        f"saga {saga_id} exists already{known}", saga_id=saga_id, status=status
    )


def stale_saga(saga_id: str, expected_version: int) -> ConcurrencyError:
    return ConcurrencyError(
        f"saga {saga_id}: version {expected_version} is stale; "
        "another worker saved it first"
    )


def consumed_before(saga_id: str, inbox: InboxEntry) -> DuplicateMessage:
    return DuplicateMessage(
        f"saga {saga_id}: message {inbox.message_id!r} was consumed by "
        f"{inbox.consumer!r} before"
    )


def own_lines(saga_id: str, history: Sequence[HistoryEntry]) -> Sequence[HistoryEntry]:
    """``history``, the lines a write of ``saga_id`` appends, if each is of
    that saga; a line of another saga raises ``StoreError``, before anything
    is written (PostgreSQL's and SQLite's statements refuse it too)."""
    for line in history:
        if line.saga_id != saga_id:
            raise StoreError(
                f"saga {saga_id}: a write was given a history line of saga "
                f"{line.saga_id!r}; it appends only lines of its own saga"
            )
    return history


def unique_ids(ids: Any) -> list[str]:
    """Ids without repeats, in their first order."""
    return list(dict.fromkeys(ids))


# -- workflows ---------------------------------------------------------------


def workflow_record(row: Row) -> WorkflowRecord:
    """``app, instance_id, status, step, input, due_at, state, version,
    attempts, transitions, error, created_at, updated_at, owner,
    lease_until, result, start_digest, definition_version, fingerprint``."""
    from sagakit.ports.workflow_store import (  # noqa: PLC0415 - see top
        WorkflowRecord,
        WorkflowStatus,
    )

    return WorkflowRecord(
        app=row[0],
        instance_id=row[1],
        status=WorkflowStatus(row[2]),
        step=row[3],
        input=loads_or_none(row[4]),
        due_at=row[5],
        state=json.loads(row[6]),
        version=row[7],
        attempts=row[8],
        transitions=row[9],
        error=row[10],
        created_at=row[11],
        updated_at=row[12],
        owner=row[13],
        lease_until=row[14],
        result=loads_or_none(row[15]),
        start_digest=row[16],
        definition_version=row[17],
        fingerprint=row[18],
    )


def workflow_history_entry(row: Row) -> WorkflowHistoryEntry:
    """``app, instance_id, step, attempt, outcome, detail, error,
    recorded_at``."""
    from sagakit.ports.workflow_store import (  # noqa: PLC0415 - see top
        WorkflowHistoryEntry,
    )

    return WorkflowHistoryEntry(
        app=row[0],
        instance_id=row[1],
        step=row[2],
        attempt=row[3],
        outcome=row[4],
        detail=loads_or_none(row[5]),
        error=row[6],
        recorded_at=row[7],
    )


def workflow_columns(record: WorkflowRecord) -> tuple[Any, ...]:
    """The columns from ``status`` to ``error``, as both dialects bind them."""
    return (
        record.status.value,
        record.step,
        dumps_or_none(record.input),
        record.due_at,
        dumps(record.state),
        record.version,
        record.attempts,
        record.transitions,
        record.error,
    )


def workflow_definition(record: WorkflowRecord) -> tuple[int, str | None]:
    """``definition_version, fingerprint``, bound last by both dialects."""
    return (record.definition_version, record.fingerprint)


def workflow_insert_params(
    record: WorkflowRecord, history: Sequence[WorkflowHistoryEntry]
) -> tuple[Any, ...]:
    """What ``workflow_insert`` binds on PostgreSQL and MySQL."""
    return (
        record.app,
        record.instance_id,
        *workflow_columns(record),
        record.created_at,
        record.updated_at,
        record.owner,
        record.lease_until,
        workflow_history_json(history),
        dumps_or_none(record.result),
        record.start_digest,
        *workflow_definition(record),
    )


def workflow_save_params(
    record: WorkflowRecord,
    expected_version: int,
    history: Sequence[WorkflowHistoryEntry],
) -> tuple[Any, ...]:
    """What ``workflow_save`` binds on PostgreSQL and MySQL
    (``workflow_save_many`` on PostgreSQL: per column)."""
    return (
        record.app,
        record.instance_id,
        *workflow_columns(record),
        record.updated_at,
        record.owner,
        expected_version,
        record.lease_until,
        workflow_history_json(history),
        dumps_or_none(record.result),
        *workflow_definition(record),
    )


def workflow_save_problem(
    record: WorkflowRecord, expected_version: int, saved: Any, found: Any
) -> Exception | None:
    """What a workflow save raises when its statement said ``saved`` and
    ``found`` (the instance exists), if anything."""
    if saved:
        return None
    name = f"workflow {record.app}/{record.instance_id}"
    if found:
        return stale_workflow(name, expected_version)
    return SagaNotFound(f"{name} does not exist")


def live_counts(found: Sequence[Row], width: int) -> dict[Any, int]:
    """Rows of ``width`` grouping columns then a count: the counts by key."""
    return {tuple(r[i] for i in range(width)): int(r[width]) for r in found}


def stale_workflow(name: str, expected_version: int) -> ConcurrencyError:
    return ConcurrencyError(
        f"{name}: version {expected_version} is stale; another writer saved it first"
    )


def per_version(query: str, version: int | None) -> str:
    """The named workflow query for one definition ``version`` (it searches
    one range of the wake-up index), or its ``_any_version`` twin."""
    return query if version is not None else f"{query}_any_version"


def by_due_then_id(records: list[WorkflowRecord]) -> list[WorkflowRecord]:
    return sorted(records, key=lambda r: (r.due_at or 0.0, r.instance_id))


# -- choreography ------------------------------------------------------------


def tracked_choreography(row: Row) -> TrackedChoreography:
    """``correlation_id, name, status, started_at, updated_at, deadline,
    definition_version, fingerprint``."""
    from sagakit.ports.event_store import (  # noqa: PLC0415 - see top
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
    from sagakit.ports.event_store import (  # noqa: PLC0415 - see top
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
