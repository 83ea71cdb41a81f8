"""The values of the lock port (:mod:`sagakit.ports.locks`): what a save
changes (:class:`LockChange`, made by :func:`lock_change`), and who holds a
key or queues for it (:class:`LockHolder`, :class:`LockWaiter`).

Apart from :mod:`sagakit.ports.locks`, which still exports every name here
(loaded on first read), for the reason :mod:`sagakit.ports.entry` is apart
from the store port: ``sagakit list`` builds none of these dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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


__all__ = ["LockChange", "LockHolder", "LockWaiter", "lock_change"]
