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

__all__ = ["locks", "release_lock"]


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
