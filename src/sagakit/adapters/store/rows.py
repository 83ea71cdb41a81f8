"""Rows to records and back, shared by the SQLite and PostgreSQL stores.

Both dialects select the same columns in the same order, and both drivers'
rows index by position (``sqlite3`` tuples, ``asyncpg.Record``), so one
mapping serves both. JSON columns travel as compact text either way.
This module maps sagas (and holds the JSON helpers); workflows are mapped in
:mod:`sagakit.adapters.store.workflow_rows`, choreographies in
:mod:`sagakit.adapters.store.event_rows`.
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

if TYPE_CHECKING:  # a saga store's reads (``sagakit list``) need no
    # write's entries: see ``store_port`` above
    from sagakit.ports.entry import HistoryEntry, InboxEntry, OutboxMessage


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


def live_counts(found: Sequence[Row], width: int) -> dict[Any, int]:
    """Rows of ``width`` grouping columns then a count: the counts by key."""
    return {tuple(r[i] for i in range(width)): int(r[width]) for r in found}
