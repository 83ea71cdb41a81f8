"""Semantic locks in dictionaries: the in-memory store's lock table.

:meth:`MemoryLocks.apply` is a save's :class:`~sagakit.ports.locks.LockChange`,
all or nothing (it works on copies and keeps them only when nothing was
refused); the SQL stores do the same in SQL (``queries.sql``, ``lock_*``).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection

from sagakit.adapters.store.locks_sql import shortest_cycle
from sagakit.errors import LockUnavailable
from sagakit.ports.locks import LockChange, LockHolder, LockTable, LockWaiter


class MemoryLocks:
    """Holders by key, and each key's queue in order."""

    def __init__(self) -> None:
        self.holders: dict[str, LockHolder] = {}
        self.queues: dict[str, list[LockWaiter]] = {}
        self._positions = itertools.count(1)

    def apply(self, saga_id: str, change: LockChange, now: float) -> None:
        """Make ``change`` for ``saga_id`` (see ``LockChange``); raise
        ``LockUnavailable`` and change nothing when it is refused."""
        holders = dict(self.holders)
        queues = {k: list(v) for k, v in self.queues.items()}
        for key in change.release:
            held = holders.get(key)
            if held is not None and held.saga_id == saga_id:
                del holders[key]
        busy = _busy(holders, queues, saga_id, change.acquire)
        if busy:
            raise LockUnavailable(
                f"saga {saga_id}: locks busy: {busy}", saga_id=saga_id, holders=busy
            )
        for key, step in change.acquire:
            if key not in holders:
                holders[key] = LockHolder(key, saga_id, step, now)
            _leave(queues, key, saga_id, step)
        for key, step in change.unwait:
            _leave(queues, key, saga_id, step)
        for key, step, since in change.wait:
            queue = queues.setdefault(key, [])
            if not any(w.saga_id == saga_id and w.step == step for w in queue):
                queue.append(
                    LockWaiter(key, saga_id, step, since, next(self._positions))
                )
        if change.wait:
            cycle = find_cycle(saga_id, holders, queues)
            if cycle:
                raise LockUnavailable(
                    f"saga {saga_id}: waiting would deadlock with {cycle}",
                    saga_id=saga_id,
                    holders=_blockers(holders, queues, saga_id, change.wait),
                    cycle=cycle,
                )
        self.holders = holders
        self.queues = {k: v for k, v in queues.items() if v}

    def table(self, prefix: str | None, saga_id: str | None, limit: int) -> LockTable:
        def wanted(key: str, owner: str) -> bool:
            if saga_id is not None and owner != saga_id:
                return False
            return prefix is None or key.startswith(prefix)

        holders = sorted(
            (h for h in self.holders.values() if wanted(h.key, h.saga_id)),
            key=lambda h: h.key,
        )
        waiters = sorted(
            (w for q in self.queues.values() for w in q if wanted(w.key, w.saga_id)),
            key=lambda w: (w.key, w.position),
        )
        return LockTable(holders[:limit], waiters[:limit])

    def ready(self, saga_ids: Collection[str]) -> list[str]:
        wanted = set(saga_ids)
        steps: dict[tuple[str, str], list[str]] = {}
        for queue in self.queues.values():
            for w in queue:
                if w.saga_id in wanted:
                    steps.setdefault((w.saga_id, w.step), []).append(w.key)
        found = []
        for (saga_id, step), keys in steps.items():
            pairs = tuple((key, step) for key in keys)
            if not _busy(self.holders, self.queues, saga_id, pairs):
                found.append(saga_id)
        return sorted(set(found))


def _leave(queues: dict[str, list[LockWaiter]], key: str, saga: str, step: str) -> None:
    queue = queues.get(key)
    if queue:
        queues[key] = [w for w in queue if not (w.saga_id == saga and w.step == step)]


def _position(queue: list[LockWaiter], saga_id: str, step: str) -> float:
    for w in queue:
        if w.saga_id == saga_id and w.step == step:
            return w.position
    return float("inf")


def _busy(
    holders: dict[str, LockHolder],
    queues: dict[str, list[LockWaiter]],
    saga_id: str,
    pairs: Collection[tuple[str, str]],
) -> dict[str, str]:
    """Of ``pairs`` (key, step), the keys ``saga_id`` cannot take now, each
    with the saga in the way (its holder, or the first that queues before)."""
    busy: dict[str, str] = {}
    for key, step in pairs:
        held = holders.get(key)
        if held is not None and held.saga_id != saga_id:
            busy[key] = held.saga_id
            continue
        queue = queues.get(key, [])
        mine = _position(queue, saga_id, step)
        ahead = next(
            (w for w in queue if w.saga_id != saga_id and w.position < mine), None
        )
        if ahead is not None:
            busy[key] = ahead.saga_id
    return busy


def _blockers(
    holders: dict[str, LockHolder],
    queues: dict[str, list[LockWaiter]],
    saga_id: str,
    wait: Collection[tuple[str, str, float]],
) -> dict[str, str]:
    return _busy(holders, queues, saga_id, [(key, step) for key, step, _ in wait])


def _edges(
    holders: dict[str, LockHolder], queues: dict[str, list[LockWaiter]]
) -> dict[str, set[str]]:
    """Saga -> the sagas it waits for: the holder of each key it queues for,
    and every other saga before it in that queue."""
    out: dict[str, set[str]] = {}
    for key, queue in queues.items():
        held = holders.get(key)
        for i, w in enumerate(queue):
            ahead = {o.saga_id for o in queue[:i]}
            if held is not None:
                ahead.add(held.saga_id)
            ahead.discard(w.saga_id)
            out.setdefault(w.saga_id, set()).update(ahead)
    return out


def find_cycle(
    saga_id: str,
    holders: dict[str, LockHolder],
    queues: dict[str, list[LockWaiter]],
) -> tuple[str, ...]:
    """The other sagas on a wait-for path from ``saga_id`` back to itself
    (a shortest one), or () if there is none."""
    return shortest_cycle(saga_id, _edges(holders, queues))
