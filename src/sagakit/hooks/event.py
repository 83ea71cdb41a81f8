"""What hooks are told: the events, the notifications that record them, and
the JSON a webhook receives.

An event's ``id`` is deterministic, so finding it again (after a crash, by
another notifier) adds nothing: ``saga.failed:<saga id>:<version>`` (the
saga's version when it ended), ``saga.stuck:<saga id>:<version>`` (once per
version it is stuck at), ``lock.waiting:<saga id>:<key>:<since>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from sagakit.ports.notification_store import LockWait, Notification, Unattended
from sagakit.ports.store import SagaRecord


class EventKind(StrEnum):
    """What happened. The webhook body's ``type``."""

    SAGA_FAILED = "saga.failed"
    """The saga ended ``failed``: a step failed after the pivot (nothing
    was compensated), or for good with nothing to undo."""
    SAGA_COMPENSATION_FAILED = "saga.compensation_failed"
    """A compensation kept failing: the saga is half undone."""
    SAGA_STUCK = "saga.stuck"
    """Nothing moved it for a while and nobody drives it (``detail.reason``
    says why: ``unclaimed``, ``orphaned``, ``waiting`` or ``paused``)."""
    LOCK_WAITING = "lock.waiting"
    """The saga has waited for a semantic lock longer than allowed."""


ALL_EVENTS = frozenset(EventKind)


@dataclass(frozen=True, slots=True, kw_only=True)
class HookEvent:
    """One event as a hook receives it (a callback gets this object, a
    webhook its :meth:`to_dict` as JSON)."""

    id: str
    kind: EventKind
    occurred_at: float
    saga_id: str | None
    saga_name: str | None
    saga: Mapping[str, Any] | None
    """The saga as it is when the event is sent (None if it is gone)."""
    detail: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1
    """1 for the first delivery, then one more per retry."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.kind.value,
            "occurred_at": self.occurred_at,
            "saga_id": self.saga_id,
            "saga_name": self.saga_name,
            "saga": None if self.saga is None else dict(self.saga),
            "detail": dict(self.detail),
        }

    def body(self) -> bytes:
        """The webhook request body: compact JSON, UTF-8."""
        text = json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)
        return text.encode()


def saga_view(record: SagaRecord, dashboard_url: str | None) -> dict[str, Any]:
    """What a body says of the saga: enough to act on it."""
    state = record.state
    view: dict[str, Any] = {
        "id": record.saga_id,
        "name": record.saga_name,
        "status": record.status.value,
        "version": record.version,
        "definition_version": record.definition_version,
        "paused": state.paused,
        "waiting": record.waiting,
        "failed_step": state.failed_step,
        "error": None if state.error is None else str(state.error),
        "compensation_errors": [
            {"step": step, "error": str(error)}
            for step, error in state.compensation_errors
        ],
        "idempotency_key": record.idempotency_key,
        "parent": None if state.parent is None else state.parent.to_dict(),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }
    if dashboard_url:
        view["url"] = f"{dashboard_url.rstrip('/')}/sagas/{quote(record.saga_id, '')}"
    return view


def hook_event(
    note: Notification, record: SagaRecord | None, dashboard_url: str | None
) -> HookEvent:
    """The event a notification records, with the saga as it is now."""
    return HookEvent(
        id=note.event_id,
        kind=EventKind(note.kind),
        occurred_at=note.occurred_at,
        saga_id=note.saga_id,
        saga_name=note.saga_name,
        saga=None if record is None else saga_view(record, dashboard_url),
        detail=dict(note.detail or {}),
        attempt=note.attempts + 1,
    )


def stuck_reason(found: Unattended) -> tuple[str, str]:
    """Why nobody moves the saga on: a reason and a sentence for people."""
    record = found.record
    if record.waiting is not None:
        return "waiting", f"no process can run it: {record.waiting}"
    if found.owner is None:
        return "unclaimed", "no process has claimed it (is a worker running?)"
    if not found.lease_live:
        return "orphaned", (
            f"its owner {found.owner} stopped renewing its lease (the process "
            "is gone or stalled) and no process took it over"
        )
    if record.state.parked is not None:  # a poison step: it paused itself
        return "paused", (
            f"it paused itself and keeps its locks: {record.state.parked}; "
            "unpause it once its step is sound"
        )
    return "paused", "an operator paused it and nobody unpaused it"


def stuck_notification(found: Unattended, now: float) -> Notification:
    record = found.record
    reason, message = stuck_reason(found)
    return Notification(
        event_id=f"{EventKind.SAGA_STUCK.value}:{record.saga_id}:{record.version}",
        kind=EventKind.SAGA_STUCK.value,
        saga_id=record.saga_id,
        saga_name=record.saga_name,
        version=record.version,
        occurred_at=now,
        detail={
            "reason": reason,
            "message": message,
            "owner": found.owner,
            "unchanged_since": record.updated_at,
        },
    )


def lock_notification(wait: LockWait, now: float) -> Notification:
    kind = EventKind.LOCK_WAITING.value
    return Notification(
        event_id=f"{kind}:{wait.saga_id}:{wait.key}:{wait.since!r}",
        kind=kind,
        saga_id=wait.saga_id,
        saga_name=wait.saga_name,
        version=None,
        occurred_at=now,
        detail={
            "key": wait.key,
            "step": wait.step,
            "holder": wait.holder,
            "waiting_since": wait.since,
            "waited": max(0.0, now - wait.since),
        },
    )


__all__ = [
    "ALL_EVENTS",
    "EventKind",
    "HookEvent",
    "hook_event",
    "lock_notification",
    "saga_view",
    "stuck_notification",
    "stuck_reason",
]
