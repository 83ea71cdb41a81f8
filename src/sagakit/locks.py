"""Semantic locks from outside a saga: who holds a key, who queues for it,
and an operator's release.

A participant that shares the saga store can check, before it acts, that
the saga sending a command holds the key it is about to touch::

    from sagakit import locks

    held = await locks.holder(store, f"seat:{cmd.flight}:{cmd.seat}")
    if held is None or held.saga_id != message.saga_id:
        raise CommandRejected("the seat is not locked by this booking")

(``sagakit.participant.require_lock`` does exactly that.) ``sagakit locks``
and the dashboard's ``/api/locks`` list holders and waiters with their ages;
:func:`release` takes a key from the saga that holds it, with the reason in
that saga's history (it goes on without the key).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from sagakit.engine.events import LockReleaseRequested
from sagakit.engine.locks import release_requested
from sagakit.errors import ConcurrencyError, SagaError, StateError
from sagakit.ports.clock import Clock, SystemClock
from sagakit.ports.locks import LockChange, LockHolder, LockTable, SagaLocks
from sagakit.ports.store import SagaRecord, SagaStore, saga_line

logger = logging.getLogger(__name__)

ATTEMPTS = 3
"""Times a release is tried again when the saga moved meanwhile."""


async def holder(store: SagaLocks, key: str) -> LockHolder | None:
    """The saga that holds ``key`` (with its step and since when), or None."""
    return (await store.lock_holders([key])).get(key)


async def holds(store: SagaLocks, key: str, saga_id: str) -> bool:
    """Whether saga ``saga_id`` holds ``key`` now."""
    found = await holder(store, key)
    return found is not None and found.saga_id == saga_id


async def table(
    store: SagaLocks,
    *,
    prefix: str | None = None,
    saga_id: str | None = None,
    limit: int = 100,
) -> LockTable:
    """Holders and waiters of the keys starting with ``prefix`` (or of one
    saga), by key and queue order; at most ``limit`` of each."""
    if limit < 1:
        raise SagaError(f"limit must be at least 1, got {limit}")
    return await store.list_locks(prefix=prefix, saga_id=saga_id, limit=limit)


@dataclass(frozen=True, slots=True)
class Released:
    """What :func:`release` did: the key, the saga that held it (as saved)."""

    key: str
    record: SagaRecord


async def release(
    store: SagaStore,
    key: str,
    *,
    reason: str,
    by: str = "operator",
    clock: Clock | None = None,
) -> Released:
    """Take ``key`` from the saga that holds it: one commit of that saga
    (its lease left as it is, so the process driving it goes on, without
    the key) with a ``lock_released`` history line saying who and why.
    ``StateError`` if nobody holds ``key`` or ``reason`` is empty."""
    if not reason.strip():
        raise StateError("releasing a lock needs a reason (it goes in the history)")
    now = (clock or SystemClock()).now()
    attempt = 1
    while True:
        try:
            record = await _release_once(store, key, now, reason=reason, by=by)
        except ConcurrencyError:  # its driver moved it on meanwhile: again
            if attempt == ATTEMPTS:
                raise
            attempt += 1
            continue
        logger.info(
            "lock released by an operator",
            extra={
                "action": "lock_released",
                "saga_id": record.saga_id,
                "key": key,
                "by": by,
            },
        )
        return Released(key, await store.get(record.saga_id))


async def _release_once(
    store: SagaStore, key: str, now: float, *, reason: str, by: str
) -> SagaRecord:
    found = await holder(store, key)
    if found is None:
        raise StateError(f"no saga holds lock {key!r}")
    record = await store.get(found.saga_id)
    state = record.state
    if state.locks is not None and key in state.locks.held:
        state = release_requested(state, LockReleaseRequested(key, now, reason, by))
    said: dict[str, Any] = {"key": key, "step": found.step, "by": by, "reason": reason}
    line = saga_line(record.saga_id, "lock_released", now, said)
    moved = replace(record, version=record.version + 1, state=state, updated_at=now)
    change = LockChange(release=(key,))
    await store.save(moved, record.version, [line], locks=change)
    return record


__all__ = ["Released", "holder", "holds", "release", "table"]
