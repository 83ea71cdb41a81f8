"""Reading and releasing semantic locks (``sagakit locks``, the dashboard's
``/api/locks``), as :mod:`sagakit.admin` exports them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagakit.admin.actions import said

if TYPE_CHECKING:
    from sagakit.locks import Released
    from sagakit.ports.clock import Clock
    from sagakit.ports.locks import LockTable
    from sagakit.ports.store import SagaStore

__all__ = ["held_up", "locks", "release_lock"]


async def locks(
    store: SagaStore,
    *,
    prefix: str | None = None,
    saga_id: str | None = None,
    limit: int = 100,
) -> LockTable:
    """Who holds the semantic locks whose keys start with ``prefix`` (or
    those of one saga) and who queues for them, by key and queue order
    (``sagakit locks``, the dashboard's ``/api/locks``)."""
    from sagakit import locks as semantic  # noqa: PLC0415 - see top

    return await semantic.table(store, prefix=prefix, saga_id=saga_id, limit=limit)


READS_AT_ONCE = 8
"""Holders :func:`held_up` reads side by side on a store whose reads wait
for a server (a pooled store serves them on as many connections as it
has)."""


async def held_up(store: SagaStore, table: LockTable) -> dict[str, str]:
    """Why holders of ``table`` cannot go on, by saga id, for those that
    cannot: paused by an operator, parked (a poison step: the reason it
    gave), or ended without letting go. A saga queued behind such a holder
    waits until an operator unpauses it or releases the key. One read of
    each holder (at most ``limit`` of them), :data:`READS_AT_ONCE` at a
    time where reads wait for a server; one after the other on a store
    whose calls never wait (``blocking_writes``: SQLite), where side by
    side gains nothing and would need an event loop that ``sagakit
    locks`` otherwise does without (``cli.common.run_read``)."""
    ids = list(dict.fromkeys(h.saga_id for h in table.holders))
    # runtime.group.writes_block asks the same; not imported here: it loads
    # asyncio, which sagakit locks on SQLite does without
    if getattr(store, "blocking_writes", False):
        found = [await _why_held_up(store, saga_id) for saga_id in ids]
    else:
        found = await _side_by_side(store, ids)
    return {s: reason for s, reason in zip(ids, found, strict=True) if reason}


async def _side_by_side(store: SagaStore, ids: list[str]) -> list[str | None]:
    """:func:`_why_held_up` of each of ``ids``, :data:`READS_AT_ONCE` at a time."""
    import asyncio  # noqa: PLC0415 - see top

    turns = asyncio.Semaphore(READS_AT_ONCE)

    async def why(saga_id: str) -> str | None:
        async with turns:
            return await _why_held_up(store, saga_id)

    return list(await asyncio.gather(*(why(saga_id) for saga_id in ids)))


async def _why_held_up(store: SagaStore, saga_id: str) -> str | None:
    """Why the holder ``saga_id`` cannot go on, or None if it can."""
    from sagakit.errors import SagaNotFound  # noqa: PLC0415 - see top

    try:
        record = await store.get(saga_id)
    except SagaNotFound:
        return "no such saga: release the key"
    state = record.state
    if record.status.terminal:
        return f"ended ({record.status.value}) without letting go"
    if state.parked is not None:
        return f"parked: {state.parked}"
    if state.paused:
        return "paused by an operator"
    return None


async def release_lock(
    store: SagaStore,
    key: str,
    *,
    reason: str,
    by: str,
    clock: Clock | None = None,
) -> Released:
    """Take ``key`` from the saga that holds it, with ``reason`` and ``by``
    in that saga's history (see :func:`sagakit.locks.release`)."""
    from sagakit import locks as semantic  # noqa: PLC0415 - see top

    by, reason = said(by, reason)
    return await semantic.release(store, key, reason=reason, by=by, clock=clock)
