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
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from sagakit.engine.state import SagaState


@dataclass(frozen=True, slots=True)
class LockChange:
    """What one save does to its saga's locks, all in its transaction.

    In this order: ``release`` the keys it holds; ``acquire`` every (key,
    step), all or none (a key the saga holds already is kept), leaving the
    step's places in their queues; leave the queues of ``unwait`` (key,
    step); queue for ``wait`` (key, step, since) at the back of each key's
    queue (a place it has is kept). A key
    that is busy raises ``LockUnavailable`` naming who holds it (or queues
    first); waiting that would close a wait-for cycle raises it with the
    cycle. Either way nothing of the save is written. Keys come sorted.
    """

    acquire: tuple[tuple[str, str], ...] = ()
    release: tuple[str, ...] = ()
    wait: tuple[tuple[str, str, float], ...] = ()
    unwait: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.acquire or self.release or self.wait or self.unwait)


def _pairs(state: SagaState) -> dict[tuple[str, str], float]:
    """(key, step) -> since, of every queue place ``state`` asks for."""
    if state.locks is None:
        return {}
    return {
        (key, step): wait.since
        for step, wait in state.locks.waits.items()
        for key in wait.keys
    }


def lock_change(before: SagaState, after: SagaState) -> LockChange | None:
    """What committing ``after`` over ``before`` changes of the locks (None:
    nothing)."""
    if before.locks is after.locks:
        return None
    held_before = {} if before.locks is None else before.locks.held
    held_after = {} if after.locks is None else after.locks.held
    waits_before, waits_after = _pairs(before), _pairs(after)
    change = LockChange(
        acquire=tuple(
            sorted((k, h.step) for k, h in held_after.items() if k not in held_before)
        ),
        release=tuple(sorted(k for k in held_before if k not in held_after)),
        wait=tuple(
            sorted(
                (k, s, since)
                for (k, s), since in waits_after.items()
                if (k, s) not in waits_before
            )
        ),
        unwait=tuple(sorted(p for p in waits_before if p not in waits_after)),
    )
    return change if change else None


@dataclass(frozen=True, slots=True)
class LockHolder:
    """The saga that holds ``key``: taken when its ``step`` started, at
    ``since`` (Unix time, by the store's clock)."""

    key: str
    saga_id: str
    step: str
    since: float


@dataclass(frozen=True, slots=True)
class LockWaiter:
    """A saga whose ``step`` queues for ``key`` since ``since``; ``position``
    orders the queue (lower first)."""

    key: str
    saga_id: str
    step: str
    since: float
    position: int


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
