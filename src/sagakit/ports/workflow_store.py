"""The workflow store port: durable instances of workflow-style sagas.

An instance is one row: its status, the step call it is waiting for (step
name, JSON input, ``due_at``), its state (a JSON object), a version for
optimistic concurrency and a lease for the worker running it. Times are
epoch seconds of the caller's clock (``now`` is always passed in), so a fake
clock drives timers and leases alike.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from sagakit.ports.workflow_status import (
    WorkflowStatus as WorkflowStatus,  # noqa: PLC0414 - its old home
)

WAITING = "waiting: "
"""How the ``error`` of a pending instance starts when no process that looked
at it can run it (its pending step, or the version of the app it started on,
is not registered there): it waits for one that can."""

LiveWorkflows = dict[tuple[str, int, str | None, str | None], int]
"""Unfinished instances by ``(app, definition_version, fingerprint, step)``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowRecord:
    """One instance as stored. ``step``/``input``/``due_at`` are the pending
    call (``due_at`` None: waits for ``call`` only); ``attempts`` counts the
    starts of that call; ``transitions`` the steps completed so far.
    ``result`` is the JSON value a succeeded instance ended with (what its
    last step returned; None if it returned None). ``start_digest`` hashes
    the call that started the instance, so that starting it again with
    another call is refused; stores write it once, on ``create``."""

    app: str
    instance_id: str
    status: WorkflowStatus
    step: str | None
    input: Any
    due_at: float | None
    state: dict[str, Any]
    version: int
    attempts: int
    transitions: int
    error: str | None
    created_at: float
    updated_at: float
    owner: str | None = None
    lease_until: float | None = None
    result: Any = None
    start_digest: str | None = None
    """None for an instance written before digests were kept."""
    definition_version: int = 1
    """The version of the app (its steps) the instance started on."""
    fingerprint: str | None = None
    """That version's structural fingerprint (None: unknown, written before
    fingerprints were kept; the version is trusted)."""

    @property
    def waiting(self) -> bool:
        """Pending, and no process that looked at it could run it (its pending
        step or its version of the app is not registered there)."""
        return self.status is WorkflowStatus.PENDING and (self.error or "").startswith(
            WAITING
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowHistoryEntry:
    """One append-only line: what happened to an instance and when."""

    app: str
    instance_id: str
    step: str | None
    attempt: int
    outcome: str  # started, succeeded, retrying, failed, delivered, ...
    recorded_at: float
    detail: Any = None
    error: str | None = None


class WorkflowStore(Protocol):
    """What the workflow runtime needs from a database."""

    async def create(
        self, record: WorkflowRecord, history: Sequence[WorkflowHistoryEntry]
    ) -> tuple[WorkflowRecord, bool]:
        """Insert the instance; if ``(app, instance_id)`` exists, return the
        stored one and ``False`` (nothing written). Of concurrent creates of
        one instance, exactly one returns ``True``."""

    async def get(self, app: str, instance_id: str) -> WorkflowRecord:
        """The instance, or ``SagaNotFound``."""

    async def save(
        self,
        record: WorkflowRecord,
        expected_version: int,
        history: Sequence[WorkflowHistoryEntry],
    ) -> None:
        """Replace the instance (owner, lease and result included; not its
        ``created_at`` and ``start_digest``) and append history in one
        transaction, if its stored version is ``expected_version``;
        else ``ConcurrencyError`` (``SagaNotFound`` if it does not exist)."""

    async def claim(
        self,
        app: str,
        owner: str,
        steps: Collection[str],
        *,
        now: float,
        lease: float,
        limit: int = 100,
        version: int | None = None,
        fingerprint: str | None = None,
    ) -> list[WorkflowRecord]:
        """Take pending instances due by ``now`` whose step is in ``steps``,
        and running ones whose lease expired: each becomes running, owned by
        ``owner`` until ``now + lease``, its version and attempts bumped.
        Concurrent claimers never get the same instance.

        With ``version``, only instances that started on that definition
        version; with ``fingerprint`` too, only those whose fingerprint is
        that one or unknown (None). SQL stores serve a claim of one
        ``version`` from an index, whatever the number of instances; one
        without reads all of the app's unfinished instances."""

    async def renew(
        self, app: str, owner: str, instance_id: str, *, now: float, lease: float
    ) -> bool:
        """Extend ``owner``'s lease; ``False`` if it no longer holds it."""

    async def next_due(
        self,
        app: str,
        steps: Collection[str],
        *,
        version: int | None = None,
        fingerprint: str | None = None,
    ) -> float | None:
        """The earliest ``due_at`` of a pending instance (or a lease end of a
        running one) that :meth:`claim` with the same ``steps``, ``version``
        and ``fingerprint`` would take, or None."""

    async def unfinished(self, app: str) -> int:
        """How many instances of ``app`` are pending or running."""

    async def history(self, app: str, instance_id: str) -> list[WorkflowHistoryEntry]:
        """The instance's history in the order it was written."""

    async def live_workflows(self) -> LiveWorkflows:
        """How many pending or running instances of every app need each
        definition and step, by ``(app, definition_version, fingerprint,
        step)`` (``sagakit deploy-check``). Instances written before versions
        were kept count as version 1 of unknown fingerprint."""

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        app: str | None = None,
        limit: int = 50,
        created_before: float | None = None,
    ) -> list[WorkflowRecord]:
        """Instances of every app (or of ``app``), newest first: by
        ``created_at``, then instance id and app, descending.
        ``created_before`` keeps only those created strictly before it."""

    async def count_workflows_by_status(
        self, app: str | None = None
    ) -> dict[WorkflowStatus, int]:
        """How many instances (of ``app``, or of every app) are in each
        status; statuses with none are left out."""

    async def ids_with_prefix(
        self, prefix: str, *, app: str | None = None, limit: int = 10
    ) -> list[tuple[str, str]]:
        """``(app, instance_id)`` of the instances whose id starts with
        ``prefix`` (of ``app``, or of every app), by instance id then app
        (for ``sagakit workflows show``)."""

    async def close(self) -> None: ...


class WorkflowSave(NamedTuple):
    """The arguments of one :meth:`WorkflowStore.save`."""

    record: WorkflowRecord
    expected_version: int
    history: Sequence[WorkflowHistoryEntry]


@runtime_checkable
class WorkflowSaveMany(Protocol):
    """A workflow store that commits the saves of several instances together
    (the worker's steps that finish at the same moment: one commit)."""

    async def save_many(self, saves: Sequence[WorkflowSave]) -> list[Exception | None]:
        """Every save of ``saves`` (each of another instance) in one
        transaction, each exactly as :meth:`WorkflowStore.save` would do it
        alone: what that would raise (``ConcurrencyError``, ``SagaNotFound``)
        is returned in its place and writes nothing of that save, while the
        others are committed. A ``StoreError`` (the transaction failed) is
        raised and commits none."""


__all__ = [
    "WAITING",
    "LiveWorkflows",
    "WorkflowHistoryEntry",
    "WorkflowRecord",
    "WorkflowSave",
    "WorkflowSaveMany",
    "WorkflowStatus",
    "WorkflowStore",
]
