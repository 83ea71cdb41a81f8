"""The notification port: what hooks are told, and whether they have been.

A notification is one event an operator should hear about (a saga that
ended ``failed`` or ``compensation_failed``, one that nobody drives, a long
lock wait), under a deterministic ``event_id``. Endings are written by the
store in the transaction that ends the saga (whatever process or operator
ended it); notifiers add the others when they find them. A notifier claims
due notifications, tells its hooks, and records the outcome; the row stays
(``delivered``, or ``dropped`` after its last attempt) so that finding the
same event again sends nothing, until it is pruned.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from sagakit.ports.store import SagaRecord


class NotificationStatus(StrEnum):
    """Where a notification is. Stored verbatim."""

    PENDING = "pending"
    DELIVERED = "delivered"
    """Every hook of the notifier that claimed it has it."""
    DROPPED = "dropped"
    """Given up: its attempts ran out, or it was too old when first claimed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """One event for the hooks, and how its delivery goes."""

    event_id: str
    kind: str
    """``saga.failed``, ``saga.compensation_failed``, ``saga.stuck`` or
    ``lock.waiting``."""
    saga_id: str | None
    saga_name: str | None
    version: int | None
    """The saga's stored version when it happened."""
    occurred_at: float
    detail: dict[str, Any] | None = None
    """What else the event says (why a saga is stuck, the lock waited on)."""
    status: NotificationStatus = NotificationStatus.PENDING
    attempts: int = 0
    delivered_to: tuple[str, ...] = ()
    """The hooks that have it (a retry skips them)."""
    last_error: str | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unattended:
    """An unfinished saga that no process moves on: nobody holds it, its
    owner's lease expired, it waits for a definition, or it is paused."""

    record: SagaRecord
    owner: str | None
    lease_live: bool
    """Its owner's lease has not expired (by the store's clock)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LockWait:
    """A saga waiting for a semantic lock that another saga holds."""

    saga_id: str
    saga_name: str
    key: str
    since: float
    """When it started waiting."""
    step: str | None = None
    holder: str | None = None
    """The id of the saga holding the key, if known."""


class LockWaits(Protocol):
    """Where a notifier finds long lock waits (the lock store provides it)."""

    async def lock_waits(
        self, *, longer_than: float, limit: int = 100
    ) -> list[LockWait]:
        """Sagas that have waited for a lock more than ``longer_than``
        seconds, longest first."""


@runtime_checkable
class NotificationSource(Protocol):
    """A saga store that keeps notifications in its database."""

    def notification_store(self) -> NotificationStore:
        """The notifications, on the store's connection."""


@runtime_checkable
class NotificationStore(Protocol):
    """Notifications, in the saga store's database. Every method is one
    transaction. "Now" is the database clock where there is one (PostgreSQL)
    and ``time.time()`` otherwise, as for leases."""

    async def add_notifications(self, notifications: Sequence[Notification]) -> int:
        """Write each as pending, due at once, unless its ``event_id`` is
        known already (delivered or not); returns how many were new."""

    async def claim_notifications(
        self,
        owner: str,
        *,
        hold: float,
        limit: int = 50,
        saga_names: Collection[str] | None = None,
    ) -> list[Notification]:
        """Take up to ``limit`` pending notifications that are due and that
        nobody holds (or whose hold expired), the earliest due first, of
        ``saga_names`` (None: of every saga, and those of no saga); hold them
        for ``hold`` seconds. Two claimers never get the same one."""

    async def notification_delivered(
        self, event_id: str, delivered_to: Collection[str]
    ) -> None:
        """Every hook has it: ``delivered``, with one attempt more."""

    async def notification_failed(
        self,
        event_id: str,
        *,
        delivered_to: Collection[str],
        error: str,
        retry_in: float | None,
    ) -> None:
        """An attempt failed (``delivered_to``: the hooks that have it even
        so): due again in ``retry_in`` seconds, or ``dropped`` if None. The
        hold ends either way."""

    async def notifications(
        self, *, status: NotificationStatus | None = None, limit: int = 50
    ) -> list[Notification]:
        """The most recent events first (by ``occurred_at``)."""

    async def prune_notifications(self, before: float) -> int:
        """Forget notifications of events that occurred before ``before``
        (pending ones too: nobody delivered them in time); returns how many."""

    async def unattended(
        self,
        *,
        unchanged_since: float,
        saga_names: Collection[str] | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[Unattended]:
        """Unfinished sagas of ``saga_names`` (None: every saga) not updated
        since ``unchanged_since`` that nobody holds, whose lease expired,
        that wait for a definition or that are paused; oldest first (by
        ``created_at``, then id), after saga ``after`` (the last of the
        previous page) if given."""


__all__ = [
    "LockWait",
    "LockWaits",
    "Notification",
    "NotificationSource",
    "NotificationStatus",
    "NotificationStore",
    "Unattended",
]
