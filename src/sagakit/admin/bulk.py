"""Operator actions over many sagas at once: :func:`pause_all`,
:func:`unpause_all` and :func:`retry_failed` (exported by :mod:`sagakit.admin`).
Each acts saga by saga through :func:`sagakit.admin.request`; a saga that
changed meanwhile is refused and reported, not fatal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sagakit.admin import Action, Progress, request, retry, said
from sagakit.engine.state import SagaStatus
from sagakit.errors import ConcurrencyError, SagaError, StateError
from sagakit.ports.store import SagaRecord, SagaStore

if TYPE_CHECKING:
    from sagakit.definition.saga import Saga
    from sagakit.ports.clock import Clock
    from sagakit.runtime import operator


@dataclass(frozen=True, slots=True)
class BulkRetry:
    """What :func:`retry_failed` did: ids retried, and ids refused with why."""

    retried: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BulkAction:
    """What :func:`pause_all` or :func:`unpause_all` did: ids acted on, and
    ids refused with why (a saga that ended or changed meanwhile)."""

    done: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


class BulkSagaAction(Action):
    """An operator action on every fitting instance of one saga
    (:func:`pause_all`, :func:`unpause_all`)."""

    async def __call__(
        self,
        store: SagaStore,
        sagas: Sequence[Saga[Any]],
        saga: str,
        *,
        version: int | None = None,
        by: str,
        reason: str,
        limit: int = 10_000,
        clock: Clock | None = None,
    ) -> BulkAction:
        return await _bulk(
            store,
            sagas,
            saga,
            self.action,
            version=version,
            by=by,
            reason=reason,
            limit=limit,
            clock=clock,
        )


pause_all = BulkSagaAction(
    "pause",
    name="pause_all",
    doc="""Pause every running or compensating instance of ``saga`` (only those
    started on definition ``version``, if given) that is not paused yet.""",
)
unpause_all = BulkSagaAction(
    "unpause",
    name="unpause_all",
    doc="""Unpause every paused instance of ``saga`` (of ``version``, if given).""",
)


async def _bulk(
    store: SagaStore,
    sagas: Sequence[Saga[Any]],
    saga: str,
    action: operator.Action,
    *,
    version: int | None,
    by: str,
    reason: str,
    limit: int,
    clock: Clock | None,
) -> BulkAction:
    _bulk_scope(sagas, saga, limit)
    by, reason = said(by, reason)
    result = BulkAction()
    for saga_id in await store.unfinished([saga], limit=limit):
        record = await store.get(saga_id)
        if version is not None and record.definition_version != version:
            continue
        if record.state.paused != (action == "unpause"):
            continue  # already as asked
        try:
            await request(
                store, sagas, saga_id, action, by=by, reason=reason, clock=clock
            )
        except (StateError, ConcurrencyError) as exc:
            result.refused[saga_id] = str(exc)
        else:
            result.done.append(saga_id)
    return result


def _bulk_scope(sagas: Sequence[Saga[Any]], saga: str | None, limit: int) -> set[str]:
    """The names a bulk action may touch; a SagaError for a bad ``limit`` or
    a ``saga`` none of ``sagas`` defines."""
    if limit < 1:
        raise SagaError(f"limit must be at least 1, got {limit}")
    known = {s.name for s in sagas}
    if saga is not None and saga not in known:
        raise SagaError(
            f"no definition of saga {saga!r} among {', '.join(sorted(known))}"
        )
    return known


async def retry_failed(
    store: SagaStore,
    sagas: Sequence[Saga[Any]],
    *,
    saga: str | None = None,
    limit: int = 100,
    by: str,
    reason: str,
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> BulkRetry:
    """Retry up to ``limit`` ``failed`` sagas of these definitions (only those
    named ``saga``, if given), newest first: the ones ``sagakit list --status
    failed`` shows first. A saga that changed meanwhile is refused and
    skipped, not fatal."""
    known = _bulk_scope(sagas, saga, limit)
    by, reason = said(by, reason)
    found: list[SagaRecord] = []
    for name in sorted(known if saga is None else {saga}):
        found += await store.list_sagas(
            status=SagaStatus.FAILED, saga_name=name, limit=limit
        )
    found.sort(key=lambda r: (r.created_at, r.saga_id), reverse=True)
    chosen = found[:limit]
    result = BulkRetry()
    for done, record in enumerate(chosen, start=1):
        try:
            await retry(store, sagas, record.saga_id, by=by, reason=reason, clock=clock)
        except (StateError, ConcurrencyError) as exc:
            result.refused[record.saga_id] = str(exc)
        else:
            result.retried.append(record.saga_id)
        if progress is not None:
            progress(done, len(chosen))
    return result
