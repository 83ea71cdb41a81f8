"""Semantic locks on SQL: the reads both dialects share, and the wait-for
path of a deadlock (``lock_reach`` finds that there is one; the edges it
followed name its sagas).

A save's :class:`~sagakit.ports.locks.LockChange` is made by
:func:`apply_change` in the save's transaction, through the dialect's way
of running a named query there (``SQLiteStore``, ``PostgresStore``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from sagakit.adapters.store.rows import Row, dumps
from sagakit.errors import LockUnavailable
from sagakit.ports import locks as lock_port  # its values load when made
from sagakit.ports.locks import LockTable

if TYPE_CHECKING:  # built when the locks are read: a saga listing builds none
    from sagakit.ports.lock_entry import LockChange, LockHolder


class Fetches(Protocol):
    async def fetch(self, about: str, query: str, *args: Any) -> Sequence[Row]:
        """The rows of a named query; driver errors become StoreError."""


D = TypeVar("D", bound=Fetches)


class LockReads(Generic[D]):
    """``SagaLocks`` over a database's named queries. ``as_array`` is how
    the dialect takes a list (a JSON text for SQLite)."""

    database: D
    as_array: Any = staticmethod(dumps)

    async def lock_holders(self, keys: Collection[str]) -> dict[str, LockHolder]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        found = await self.database.fetch(
            "reading lock holders", "lock_holders", self.as_array(wanted)
        )
        return {r[0]: lock_port.LockHolder(r[0], r[1], r[2], r[3]) for r in found}

    async def list_locks(
        self,
        *,
        prefix: str | None = None,
        saga_id: str | None = None,
        limit: int = 100,
    ) -> LockTable:
        args = (prefix, saga_id, limit)
        held = await self.database.fetch("listing locks", "lock_list", *args)
        queued = await self.database.fetch("listing lock queues", "lock_waiters", *args)
        return LockTable(
            [lock_port.LockHolder(r[0], r[1], r[2], r[3]) for r in held],
            [lock_port.LockWaiter(r[0], r[1], r[2], r[3], r[4]) for r in queued],
        )

    async def locks_ready(self, saga_ids: Collection[str]) -> list[str]:
        wanted = sorted(set(saga_ids))
        if not wanted:
            return []
        found = await self.database.fetch(
            "finding sagas whose locks are free",
            "locks_ready",
            self.as_array(wanted),
        )
        return [r[0] for r in found]


Run = Callable[..., Awaitable[Sequence[Row]]]
"""``run(query, *args)``: the rows of a named query in the open transaction."""


async def apply_change(
    run: Run,
    saga_id: str,
    change: LockChange,
    *,
    as_array: Callable[[list[Any]], Any],
    now: float | None,
) -> None:
    """Make ``change`` for ``saga_id`` inside a save's transaction (see
    ``LockChange``; a refusal raises ``LockUnavailable`` and the caller's
    transaction rolls back). ``now`` is the time of an acquisition (None:
    the database's clock)."""
    if change.release:
        await run("lock_release", saga_id, as_array(list(change.release)))
    if change.acquire:
        keys, steps = map(as_array, columns(change.acquire))
        refused = busy_error(saga_id, await run("lock_busy", saga_id, keys, steps))
        if refused is not None:
            raise refused
        await run("lock_acquire", saga_id, keys, steps, now)
        await run("lock_unwait", saga_id, keys, steps)
    if change.unwait:
        keys, steps = map(as_array, columns(change.unwait))
        await run("lock_unwait", saga_id, keys, steps)
    if change.wait:
        keys, steps, since = map(as_array, columns(change.wait))
        await run("lock_wait", saga_id, keys, steps, since)
        reached = {r[0] for r in await run("lock_reach", saga_id)}
        if saga_id in reached:
            found = await run("lock_edges", as_array(sorted(reached)))
            cycle = shortest_cycle(saga_id, edges_of(found))
            blockers = await run("lock_busy", saga_id, keys, steps)
            raise deadlock_error(saga_id, blockers, cycle)


def columns(items: Iterable[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    """``items`` (tuples of one width, at least one) as parallel lists, one
    per column."""
    rows = list(items)
    if not rows:
        return ()
    return tuple(list(column) for column in zip(*rows, strict=True))


def busy_error(saga_id: str, found: Iterable[Row]) -> LockUnavailable | None:
    """The refusal for the busy keys ``lock_busy`` returned, if any."""
    holders = {r[0]: r[1] for r in found}
    if not holders:
        return None
    return LockUnavailable(
        f"saga {saga_id}: locks busy: {holders}", saga_id=saga_id, holders=holders
    )


def deadlock_error(
    saga_id: str, blockers: Iterable[Row], cycle: tuple[str, ...]
) -> LockUnavailable:
    """The refusal of a wait that would close ``cycle`` (``blockers``: what
    ``lock_busy`` says of the keys it would wait for)."""
    return LockUnavailable(
        f"saga {saga_id}: waiting would deadlock with {', '.join(cycle)}",
        saga_id=saga_id,
        holders={r[0]: r[1] for r in blockers},
        cycle=cycle,
    )


def edges_of(found: Iterable[Row]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in found:
        if r[1] is not None and r[1] != r[0]:
            out.setdefault(r[0], set()).add(r[1])
    return out


def shortest_cycle(
    saga_id: str, edges: Mapping[str, Collection[str]]
) -> tuple[str, ...]:
    """The other sagas on a shortest wait-for path from ``saga_id`` back to
    itself, or () if there is none."""
    came: dict[str, str] = {}
    todo = deque([saga_id])
    while todo:
        here = todo.popleft()
        for there in sorted(edges.get(here, ())):
            if there == saga_id:
                path = []
                while here != saga_id:
                    path.append(here)
                    here = came[here]
                return tuple(reversed(path))
            if there not in came:
                came[there] = here
                todo.append(there)
    return ()
