"""The store port of semantic locks: who holds which key, who queues for it.

A lock belongs to a saga instance, not to a process: its rows live in the
saga store and change only in the transaction of one of the instance's
saves (``SagaRepository.save(..., locks=LockChange(...))``), so a lock
survives its driver's crash and moves with the instance to whichever worker
claims it. :func:`lock_change` is what a transition changes, from the
engine's states before and after it.

Waiting is first come, first served, per key: a saga may take a key only
when no other saga holds it and none queues for it before this saga's own
place in that key's queue. A saga that would wait, directly or through
others, for itself (a wait-for cycle across steps and sagas) is refused
instead: :class:`~sagakit.errors.LockUnavailable` with the ``cycle``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from sagakit._lazy import module_getattr

if TYPE_CHECKING:  # loaded on first read: see __getattr__ at the end
    from sagakit.ports.lock_entry import LockChange, LockHolder, LockWaiter, lock_change


class LockTable(NamedTuple):
    """Holders and waiters, by key (waiters in queue order)."""

    holders: list[LockHolder]
    waiters: list[LockWaiter]


class SagaLocks(Protocol):
    """Reading the semantic locks (they change only with saves)."""

    async def lock_holders(self, keys: Collection[str]) -> dict[str, LockHolder]:
        """Who holds each of ``keys``; keys nobody holds are left out."""

    async def list_locks(
        self,
        *,
        prefix: str | None = None,
        saga_id: str | None = None,
        limit: int = 100,
    ) -> LockTable:
        """Holders and waiters of keys starting with ``prefix`` (any key if
        None), or only those of ``saga_id``: at most ``limit`` of each, by
        key (then queue order)."""

    async def locks_ready(self, saga_ids: Collection[str]) -> list[str]:
        """Those of ``saga_ids`` that queue with a step every key of whose
        queue places it could take now: nobody else holds the key or queues
        for it before it."""


StopListening = Callable[[], Awaitable[None]]
"""Stops what :meth:`LockReleases.listen_lock_releases` started."""


@runtime_checkable
class LockReleases(Protocol):
    """Optional: a store that tells the processes using it when lock keys
    may have become free, so that a saga queued in one process goes on as
    soon as another lets go (without it, the waiter's driver looks at the
    store every ``lock_poll`` seconds at most; it still does, as a safety
    net)."""

    async def listen_lock_releases(self, wake: Callable[[], None]) -> StopListening:
        """Call ``wake`` on this loop each time a transaction of any process
        that let go of a key, or left a key's queue, commits; returns what
        stops listening. Raises ``StoreError`` when it cannot listen."""


__all__ = [
    "LockChange",
    "LockHolder",
    "LockReleases",
    "LockTable",
    "LockWaiter",
    "SagaLocks",
    "StopListening",
    "lock_change",
]

# The lock values (:mod:`sagakit.ports.lock_entry`) load when first read
# (sagakit._lazy.module_getattr): a command that only reads instances
# (``sagakit list``) builds none of their dataclasses.
__getattr__ = module_getattr(
    globals(),
    "sagakit.ports.lock_entry",
    ("LockChange", "LockHolder", "LockWaiter", "lock_change"),
)
