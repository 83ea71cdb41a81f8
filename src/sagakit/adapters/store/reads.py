"""Reads that run the same named query on both dialects, written once.

A store inherits these over its database's ``fetch`` (``SQLiteDatabase`` and
``PostgresDatabase`` both offer it, with the same signature), so the lookups
of the saga and workflow stores are not repeated per dialect.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from sagakit.adapters.store import rows
from sagakit.adapters.store.database import schema_has
from sagakit.adapters.store.rows import Row
from sagakit.engine.state import SagaStatus
from sagakit.errors import SagaNotFound, StoreError
from sagakit.ports.store import Created, SagaRecord
from sagakit.ports.workflow_status import WorkflowStatus

# The workflow and event row mappings (workflow_rows, event_rows) are imported
# where a workflow or event store reads, not here: a saga store's reads
# (``sagakit list``) load none of them (tests/e2e/test_cli_startup.py).
if TYPE_CHECKING:  # a saga store's reads (``sagakit list``) load neither port
    from sagakit.ports.entry import Create, HistoryEntry
    from sagakit.ports.event_store import (
        ChoreographyStatus,
        EventRecord,
        LiveChoreographies,
        TrackedChoreography,
    )
    from sagakit.ports.workflow_store import (
        LiveWorkflows,
        WorkflowHistoryEntry,
        WorkflowRecord,
    )

COUNTS_MIGRATION = 15
"""The migration that keeps the number of sagas per name and status, every
status counted (0015_saga_count_changes.sql)."""

DEFINITIONS_MIGRATION = 10
"""The migration that records the definition of workflow instances and
tracked choreographies (0010_workflow_choreography_versions.sql)."""


class Fetches(Protocol):
    async def fetch(self, about: str, query: str, *args: Any) -> Sequence[Row]:
        """The rows of a named query; driver errors become StoreError."""

    async def fetch_replanned(
        self, about: str, query: str, *args: Any
    ) -> Sequence[Row]:
        """:meth:`fetch`, never with a plan cached for other arguments."""


D = TypeVar("D", bound=Fetches)


async def _live(
    database: Fetches, about: str, query: str, width: int
) -> dict[Any, int]:
    """Counts by the ``width`` definition columns of ``query``, or of
    ``query_before_versions`` on a schema not migrated to 0010 yet
    (``sagakit deploy-check`` reads a database before the release that
    migrates it is deployed)."""
    if not await schema_has(database, DEFINITIONS_MIGRATION):
        query = f"{query}_before_versions"
    return rows.live_counts(await database.fetch(about, query), width)


class SagaReads(Generic[D]):
    """Saga lookups: ``get``, ``history`` and the operators' queries."""

    database: D
    _counting = False

    async def get(self, saga_id: str) -> SagaRecord:
        about = f"saga {saga_id}: read"
        found = await self.database.fetch(about, "get_saga", saga_id)
        if not found:
            raise rows.saga_not_found(saga_id)
        return rows.saga_record(found[0])

    async def taken(self, create: Create) -> Created:
        """What a create that inserted nothing found (committed: the unique
        index waited for its writer): the saga holding its idempotency key,
        or its id taken (``SagaAlreadyExists``)."""
        record = create.record
        about = f"saga {record.saga_id}: create"
        existing = None
        if record.idempotency_key is not None:
            found = await self.database.fetch(
                about, "find_saga_by_key", record.saga_name, record.idempotency_key
            )
            existing = found[0] if found else None
        if existing is None:
            status = await self._status_of(record.saga_id)
            if status is not None:
                raise rows.saga_exists(record.saga_id, status)
            raise StoreError(
                f"saga {record.saga_id}: idempotency key {record.idempotency_key!r} "
                "is taken but its saga cannot be read"
            )
        return Created(rows.saga_record(existing), False)

    async def _status_of(self, saga_id: str) -> str | None:
        """The status of a saga whose id a create found taken; None if it is
        gone since."""
        try:
            return (await self.get(saga_id)).status.value
        except SagaNotFound:
            return None

    async def history(self, saga_id: str) -> list[HistoryEntry]:
        about = f"saga {saga_id}: history"
        found = await self.database.fetch(about, "get_history", saga_id)
        return [rows.history_entry(r) for r in found]

    async def list_sagas(
        self,
        *,
        status: SagaStatus | None = None,
        saga_name: str | None = None,
        limit: int = 50,
        created_before: float | None = None,
        waiting: bool = False,
        before_id: str | None = None,
    ) -> list[SagaRecord]:
        wanted = None if status is None else SagaStatus(status).value
        query, args = listing(
            wanted, saga_name, limit, created_before, waiting, before_id=before_id
        )
        # the best index depends on the values: a status or name with no
        # instance must not reuse a plan made for one that has many
        found = await self.database.fetch_replanned("listing sagas", query, *args)
        return [rows.saga_record(r) for r in found]

    async def find_by_key(
        self, idempotency_key: str, limit: int = 20
    ) -> list[SagaRecord]:
        found = await self.database.fetch(
            "finding sagas by key", "find_sagas_by_key", idempotency_key, limit
        )
        return [rows.saga_record(r) for r in found]

    async def search_context(
        self, text: str, *, limit: int = 50, scan: int = 10_000
    ) -> list[SagaRecord]:
        found = await self.database.fetch(
            "searching contexts", "search_sagas_context", text.lower(), limit, scan
        )
        return [rows.saga_record(r) for r in found]

    async def count_by_status(
        self, saga_name: str | None = None
    ) -> dict[SagaStatus, int]:
        if not await self._counts_kept():
            args: tuple[Any, ...] = ("count_by_status_scan", saga_name)
        elif saga_name is None:
            args = ("count_by_status",)
        else:
            args = ("count_saga_by_status", saga_name)
        found = await self.database.fetch("counting sagas", *args)
        return {SagaStatus(r[0]): int(r[1]) for r in found}

    async def _counts_kept(self) -> bool:
        """Whether the database keeps counts (migration 0015); once it does,
        it always will, so only a "no" is asked again (``sagakit db migrate``
        may run meanwhile)."""
        if not self._counting:
            self._counting = await schema_has(self.database, COUNTS_MIGRATION)
        return self._counting

    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        end = prefix_end(prefix)
        if end is None:
            args: tuple[Any, ...] = ("ids_from_prefix", prefix, limit)
        else:
            args = ("ids_with_prefix", prefix, end, limit)
        found = await self.database.fetch("finding ids", *args)
        return [r[0] for r in found]


def listing(
    status: str | None,
    saga_name: str | None,
    limit: int,
    created_before: float | None,
    waiting: bool,
    *,
    before_id: str | None = None,
) -> tuple[str, tuple[Any, ...]]:
    """The ``list_sagas`` statement for these filters, and its arguments: one
    statement per combination, so that each reads its own index in order."""
    page = (created_before, None if created_before is None else before_id)
    if waiting:
        return "list_waiting_sagas", (saga_name, status, limit, *page)
    if saga_name is not None and status is not None:
        return "list_sagas_by_name_status", (saga_name, status, limit, *page)
    if saga_name is not None:
        return "list_sagas_by_name", (saga_name, limit, *page)
    if status is not None:
        return "list_sagas_by_status", (status, limit, *page)
    return "list_sagas", (limit, *page)


_SURROGATES = range(0xD800, 0xE000)


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``, in
    code point order (SQLite's BINARY and PostgreSQL's "C" collation on
    UTF-8: byte order), so that ``prefix <= id < prefix_end(prefix)`` is a
    range of the primary key; None if there is none (``""``, or only
    U+10FFFF)."""
    chars = list(prefix)
    while chars:
        following = ord(chars.pop()) + 1
        if following in _SURROGATES:
            following = _SURROGATES.stop
        if following <= sys.maxunicode:
            return "".join(chars) + chr(following)
    return None


class WorkflowReads(Generic[D]):
    """Workflow lookups: ``get``, ``history`` and the operators' queries."""

    database: D

    async def get(self, app: str, instance_id: str) -> WorkflowRecord:
        from sagakit.adapters.store import workflow_rows  # noqa: PLC0415 - see top

        about = f"workflow {app}/{instance_id}: read"
        found = await self.database.fetch(about, "workflow_get", app, instance_id)
        if not found:
            raise SagaNotFound(f"workflow {app}/{instance_id} does not exist")
        return workflow_rows.workflow_record(found[0])

    async def history(self, app: str, instance_id: str) -> list[WorkflowHistoryEntry]:
        from sagakit.adapters.store import workflow_rows  # noqa: PLC0415 - see top

        about = f"workflow {app}/{instance_id}: history"
        found = await self.database.fetch(about, "workflow_history", app, instance_id)
        return [workflow_rows.workflow_history_entry(r) for r in found]

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        app: str | None = None,
        limit: int = 50,
        created_before: float | None = None,
    ) -> list[WorkflowRecord]:
        from sagakit.adapters.store import workflow_rows  # noqa: PLC0415 - see top

        wanted = None if status is None else WorkflowStatus(status).value
        query, before = "workflow_list", created_before
        if wanted is not None and app is not None:  # one range of an index
            query = "workflow_list_of_app_in_status"
            before = math.inf if created_before is None else created_before
        found = await self.database.fetch(
            "listing workflows", query, wanted, app, limit, before
        )
        return [workflow_rows.workflow_record(r) for r in found]

    async def count_workflows_by_status(
        self, app: str | None = None
    ) -> dict[WorkflowStatus, int]:
        found = await self.database.fetch(
            "counting workflows", "workflow_count_by_status", app
        )
        return {WorkflowStatus(r[0]): int(r[1]) for r in found}

    async def ids_with_prefix(
        self, prefix: str, *, app: str | None = None, limit: int = 10
    ) -> list[tuple[str, str]]:
        found = await self.database.fetch(
            "finding workflow ids", "workflow_ids_with_prefix", prefix, app, limit
        )
        return [(r[0], r[1]) for r in found]

    async def live_workflows(self) -> LiveWorkflows:
        return await _live(self.database, "counting live workflows", "workflow_live", 4)


class ChoreographyReads(Generic[D]):
    """Routes and tracker lookups written once for every dialect."""

    database: D

    async def live_choreographies(self) -> LiveChoreographies:
        return await _live(
            self.database, "counting live choreographies", "choreography_live", 3
        )

    async def subscribers(self, event_type: str) -> list[str]:
        about = f"routes of {event_type!r}"
        found = await self.database.fetch(about, "event_subscribers", event_type)
        return [r[0] for r in found]

    async def timeline(self, correlation_id: str) -> list[EventRecord]:
        from sagakit.adapters.store import event_rows  # noqa: PLC0415 - see top

        about = f"timeline of {correlation_id}"
        found = await self.database.fetch(about, "event_timeline", correlation_id)
        return [event_rows.event_record(r) for r in found]

    async def tracked(self, correlation_id: str) -> TrackedChoreography | None:
        from sagakit.adapters.store import event_rows  # noqa: PLC0415 - see top

        about = f"choreography {correlation_id}"
        found = await self.database.fetch(about, "choreography_get", correlation_id)
        return event_rows.tracked_choreography(found[0]) if found else None

    async def list_tracked(
        self, *, status: ChoreographyStatus | None = None, limit: int = 100
    ) -> list[TrackedChoreography]:
        from sagakit.adapters.store import event_rows  # noqa: PLC0415 - see top
        from sagakit.ports.event_store import (  # noqa: PLC0415 - see top
            ChoreographyStatus,
        )

        value = None if status is None else ChoreographyStatus(status).value
        about = "listing choreographies"
        found = await self.database.fetch(about, "choreography_list", value, limit)
        return [event_rows.tracked_choreography(r) for r in found]
