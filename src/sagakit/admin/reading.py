"""Reading stored sagas: the API behind ``sagakit list`` and ``show``
(exported by :mod:`sagakit.admin`); apart from the actions, so that a
listing loads none of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sagakit.engine.state import SagaStatus
from sagakit.errors import SagaError, SagaNotFound
from sagakit.ports.store import SagaRecord, SagaStore

if TYPE_CHECKING:
    from sagakit.ports.clock import Clock
    from sagakit.ports.entry import HistoryEntry

MIN_PREFIX = 6
"""Shortest id prefix :func:`find` accepts."""


@dataclass(frozen=True, slots=True)
class SagaDetail:
    """One saga: its record, its timeline (results, payloads, errors) and
    the sub-sagas its steps ran (its parent is in ``record.state.parent``)."""

    record: SagaRecord
    history: list[HistoryEntry]
    children: list[SagaRecord] = field(default_factory=list)


# -- reading -----------------------------------------------------------------


async def list_sagas(
    store: SagaStore,
    *,
    status: SagaStatus | None = None,
    saga: str | None = None,
    older_than: float | None = None,
    limit: int = 50,
    clock: Clock | None = None,
    waiting: bool = False,
    after: tuple[float, str] | None = None,
) -> list[SagaRecord]:
    """Sagas newest first; ``older_than`` (seconds) keeps those created more
    than that long ago; ``waiting`` only the unfinished ones no process
    drives because their definition is missing or changed where they were
    looked at (``SagaRecord.waiting`` says why). ``after`` (the
    ``created_at`` and id of the last saga of a page) gives the next page."""
    if limit < 1:
        raise SagaError(f"limit must be at least 1, got {limit}")
    before = None
    if older_than is not None:
        if older_than < 0:
            raise SagaError(f"older_than must be >= 0 seconds, got {older_than}")
        if clock is None:
            from sagakit.ports.clock import SystemClock  # noqa: PLC0415 - see top

            clock = SystemClock()
        before = clock.now() - older_than
    before_id = None
    if after is not None and (before is None or after[0] < before):
        before, before_id = after
    return await store.list_sagas(
        status=status,
        saga_name=saga,
        limit=limit,
        created_before=before,
        waiting=waiting,
        before_id=before_id,
    )


async def find(store: SagaStore, ident: str) -> SagaRecord:
    """The saga with this id, or with this unique id prefix (>= 6 characters);
    ``SagaNotFound`` otherwise (also for an ambiguous prefix)."""
    try:
        return await store.get(ident)
    except SagaNotFound:
        if len(ident) < MIN_PREFIX:
            raise SagaNotFound(
                f"no saga with id {ident!r} (an id prefix needs at least "
                f"{MIN_PREFIX} characters)"
            ) from None
    matches = await store.ids_with_prefix(ident, limit=4)
    if not matches:
        raise SagaNotFound(f"no saga with id or id prefix {ident!r}")
    if len(matches) > 1:
        shown = ", ".join(matches[:3])
        more = ", ..." if len(matches) > 3 else ""  # noqa: PLR2004 - show three
        raise SagaNotFound(f"id prefix {ident!r} is ambiguous: {shown}{more}")
    return await store.get(matches[0])


async def show(store: SagaStore, saga_id: str) -> SagaDetail:
    """The saga (by id or unique prefix), its whole timeline and its
    sub-sagas."""
    record = await find(store, saga_id)
    history = await store.history(record.saga_id)
    return SagaDetail(record, history, await children_of(store, record))


async def children_of(
    store: SagaStore, record: SagaRecord, limit: int = 100
) -> list[SagaRecord]:
    """The sub-saga instances that ``record``'s steps ran (their ids are
    ``<id>/<step>``), in id order."""
    found = []
    for child_id in await store.ids_with_prefix(f"{record.saga_id}/", limit=limit):
        try:
            child = await store.get(child_id)
        except SagaNotFound:
            continue  # deleted meanwhile
        parent = child.state.parent
        if parent is not None and parent.saga_id == record.saga_id:
            found.append(child)
    return found
