"""Long lock waits, read from a saga store's semantic locks: what a
:class:`~sagakit.hooks.Notifier` tells as ``lock.waiting`` by default.

The store lists holders and waiters by key (:meth:`SagaLocks.list_locks`),
not by age: a notifier reads up to ``scan`` queue places per sweep, which
covers every wait unless more than that many sagas queue at once.
"""

from __future__ import annotations

from sagakit.errors import SagaNotFound
from sagakit.ports.clock import Clock, SystemClock
from sagakit.ports.notification_store import LockWait
from sagakit.ports.store import SagaStore


class StoreLockWaits:
    """A :class:`~sagakit.ports.notification_store.LockWaits` over ``store``'s
    lock tables; ``clock`` must tell the store's time (as the lock tables
    record it)."""

    def __init__(
        self, store: SagaStore, *, clock: Clock | None = None, scan: int = 1_000
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.scan = scan

    async def lock_waits(
        self, *, longer_than: float, limit: int = 100
    ) -> list[LockWait]:
        table = await self.store.list_locks(limit=self.scan)
        now = self.clock.now()
        holders = {h.key: h.saga_id for h in table.holders}
        old = [w for w in table.waiters if now - w.since > longer_than]
        old.sort(key=lambda w: (w.since, w.key, w.saga_id))
        found: list[LockWait] = []
        names: dict[str, str] = {}
        for wait in old[:limit]:
            if wait.saga_id not in names:
                try:
                    names[wait.saga_id] = (await self.store.get(wait.saga_id)).saga_name
                except SagaNotFound:
                    continue  # gone since the list was read
            found.append(
                LockWait(
                    saga_id=wait.saga_id,
                    saga_name=names[wait.saga_id],
                    key=wait.key,
                    since=wait.since,
                    step=wait.step,
                    holder=holders.get(wait.key),
                )
            )
        return found


__all__ = ["StoreLockWaits"]
