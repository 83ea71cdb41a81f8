"""Store contract, semantic locks: a save's :class:`~sagakit.ports.locks.LockChange`
(all or nothing, with the save), first-come queues, wait-for cycles refused,
and the reads (:class:`~sagakit.ports.locks.SagaLocks`)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from sagakit import ConcurrencyError
from sagakit.errors import LockUnavailable
from sagakit.ports.locks import LockChange, LockHolder
from sagakit.testing.contracts.records import StoreFixtures, commits, entry, make_record


async def _sagas(store: Any, *ids: str) -> None:
    for saga_id in ids:
        await store.create(make_record(saga_id), [entry(saga_id, "started")])


async def _save(store: Any, saga_id: str, change: LockChange, **kw: Any) -> None:
    """Save ``saga_id`` at its next version with ``change``."""
    current = await store.get(saga_id)
    moved = replace(current, version=current.version + 1)
    line = entry(saga_id, "locked", kind="lock")
    await store.save(moved, current.version, [line], locks=change, **kw)


def take(*keys: str, step: str = "reserve") -> LockChange:
    return LockChange(acquire=tuple((k, step) for k in sorted(keys)))


def queue(*keys: str, step: str = "reserve", since: float = 1.0) -> LockChange:
    return LockChange(wait=tuple((k, step, since) for k in sorted(keys)))


async def _holders(store: Any) -> dict[str, str]:
    table = await store.list_locks()
    return {h.key: h.saga_id for h in table.holders}


async def _queues(store: Any) -> list[tuple[str, str]]:
    table = await store.list_locks()
    return [(w.key, w.saga_id) for w in table.waiters]


class SagaLocksContract(StoreFixtures):
    """Locks held and queued for by saga instances, changed with their saves."""

    async def test_a_save_takes_free_keys_with_its_commit(self, store: Any) -> None:
        await _sagas(store, "a")
        before = commits(store)
        await _save(store, "a", take("seat:1", "seat:2"))
        assert commits(store) == before + 1
        assert (await store.get("a")).version == 2
        holders = await store.lock_holders(["seat:1", "seat:2", "seat:3"])
        assert set(holders) == {"seat:1", "seat:2"}
        held = holders["seat:1"]
        assert isinstance(held, LockHolder)
        assert (held.key, held.saga_id, held.step) == ("seat:1", "a", "reserve")
        assert held.since > 0
        assert await store.lock_holders([]) == {}

    async def test_a_busy_key_refuses_the_whole_save(self, store: Any) -> None:
        await _sagas(store, "a", "b")
        await _save(store, "a", take("seat:1"))
        history = await store.history("b")
        with pytest.raises(LockUnavailable) as refused:
            await _save(store, "b", take("seat:1", "seat:2"))
        assert refused.value.holders == {"seat:1": "a"}
        assert refused.value.cycle == ()
        assert refused.value.saga_id == "b"
        assert (await store.get("b")).version == 1  # nothing of the save
        assert await store.history("b") == history
        assert await _holders(store) == {"seat:1": "a"}  # not half of it

    async def test_a_saga_takes_again_a_key_it_holds(self, store: Any) -> None:
        await _sagas(store, "a")
        await _save(store, "a", take("seat:1"))
        await _save(store, "a", take("seat:1", "card:1", step="pay"))
        assert await _holders(store) == {"card:1": "a", "seat:1": "a"}
        held = await store.lock_holders(["seat:1"])
        assert held["seat:1"].step == "reserve"  # as it was taken

    async def test_a_release_lets_go_of_its_own_keys_only(self, store: Any) -> None:
        await _sagas(store, "a", "b")
        await _save(store, "a", take("seat:1", "seat:2"))
        await _save(store, "b", take("seat:3"))
        await _save(store, "b", LockChange(release=("seat:1", "seat:3")))
        assert await _holders(store) == {"seat:1": "a", "seat:2": "a"}
        await _save(store, "a", LockChange(release=("seat:1", "seat:2")))
        assert await _holders(store) == {}

    async def test_a_stale_save_changes_no_lock(self, store: Any) -> None:
        await _sagas(store, "a")
        current = await store.get("a")
        await store.save(replace(current, version=2), 1, [])
        with pytest.raises(ConcurrencyError):
            await store.save(replace(current, version=2), 1, [], locks=take("k"))
        assert await _holders(store) == {}

    async def test_waiters_take_a_key_in_the_order_they_came(self, store: Any) -> None:
        await _sagas(store, "a", "b", "c")
        await _save(store, "a", take("k"))
        await _save(store, "c", queue("k", since=5.0))
        await _save(store, "b", queue("k", since=1.0))  # came later: behind
        assert await _queues(store) == [("k", "c"), ("k", "b")]
        assert await store.locks_ready(["b", "c"]) == []
        await _save(store, "a", LockChange(release=("k",)))
        assert await store.locks_ready(["a", "b", "c"]) == ["c"]
        with pytest.raises(LockUnavailable) as refused:
            await _save(store, "b", take("k"))
        assert refused.value.holders == {"k": "c"}  # first in the queue
        with pytest.raises(LockUnavailable):
            await _save(store, "a", take("k"))  # nor one that never queued
        await _save(store, "c", take("k"))
        assert await _holders(store) == {"k": "c"}
        assert await _queues(store) == [("k", "b")]  # c left the queue
        await _save(store, "c", LockChange(release=("k",)))
        assert await store.locks_ready(["b"]) == ["b"]

    async def test_queueing_again_keeps_the_place(self, store: Any) -> None:
        await _sagas(store, "a", "b", "c")
        await _save(store, "a", take("k"))
        await _save(store, "b", queue("k"))
        await _save(store, "c", queue("k"))
        await _save(store, "b", queue("k"))
        assert await _queues(store) == [("k", "b"), ("k", "c")]
        await _save(store, "b", LockChange(unwait=(("k", "reserve"),)))
        assert await _queues(store) == [("k", "c")]

    async def test_a_step_is_ready_when_every_key_it_queues_for_is(
        self, store: Any
    ) -> None:
        await _sagas(store, "a", "b", "w")
        await _save(store, "a", take("x"))
        await _save(store, "b", take("y"))
        await _save(store, "w", queue("x", "y"))
        await _save(store, "a", LockChange(release=("x",)))
        assert await store.locks_ready(["w"]) == []  # y still held
        await _save(store, "b", LockChange(release=("y",)))
        assert await store.locks_ready(["w"]) == ["w"]
        assert await store.locks_ready([]) == []

    async def test_a_wait_that_closes_a_cycle_is_refused(self, store: Any) -> None:
        await _sagas(store, "a", "b")
        await _save(store, "a", take("x"))
        await _save(store, "b", take("y"))
        await _save(store, "a", queue("y", step="pay"))  # a waits for b
        with pytest.raises(LockUnavailable) as refused:
            await _save(store, "b", queue("x", step="pay"))  # b would wait for a
        assert refused.value.cycle == ("a",)
        assert refused.value.holders == {"x": "a"}
        assert (await store.get("b")).version == 2  # nothing of the save
        assert await _queues(store) == [("y", "a")]

    async def test_a_longer_cycle_is_refused_naming_its_sagas(self, store: Any) -> None:
        await _sagas(store, "a", "b", "c")
        for saga_id in ("a", "b", "c"):
            await _save(store, saga_id, take(f"key-{saga_id}"))
        await _save(store, "a", queue("key-b", step="pay"))
        await _save(store, "b", queue("key-c", step="pay"))
        with pytest.raises(LockUnavailable) as refused:
            await _save(store, "c", queue("key-a", step="pay"))
        assert refused.value.cycle == ("a", "b")

    async def test_a_cycle_through_a_queue_is_refused(self, store: Any) -> None:
        # h holds x; b queues for x first, then a (holding y) behind b: when
        # b would wait for y too, a (behind b) and b (for a's y) would wait
        # for each other
        await _sagas(store, "h", "a", "b")
        await _save(store, "h", take("x"))
        await _save(store, "a", take("y"))
        await _save(store, "b", queue("x"))
        await _save(store, "a", queue("x", step="pay"))
        with pytest.raises(LockUnavailable) as refused:
            await _save(store, "b", queue("y", step="pay"))
        assert refused.value.cycle == ("a",)
        # waits that close no cycle are fine
        await _save(store, "h", queue("z", step="pay"))

    async def test_listing_filters_by_prefix_and_saga(self, store: Any) -> None:
        await _sagas(store, "a", "b")
        await _save(store, "a", take("seat:2", "seat:1", "card:9"))
        await _save(store, "b", queue("seat:2", "seat:1"))
        table = await store.list_locks(prefix="seat:")
        assert [h.key for h in table.holders] == ["seat:1", "seat:2"]
        assert [(w.key, w.saga_id, w.step) for w in table.waiters] == [
            ("seat:1", "b", "reserve"),
            ("seat:2", "b", "reserve"),
        ]
        assert table.waiters[0].since == 1.0
        assert table.waiters[0].position < table.waiters[1].position
        mine = await store.list_locks(saga_id="a")
        assert [h.key for h in mine.holders] == ["card:9", "seat:1", "seat:2"]
        assert mine.waiters == []
        few = await store.list_locks(limit=1)
        assert (len(few.holders), len(few.waiters)) == (1, 1)
        assert await store.list_locks(prefix="none:") == ([], [])

    async def test_two_sagas_racing_for_a_key_one_wins(
        self, store: Any, peer: Any
    ) -> None:
        ids = [f"r{n}" for n in range(6)]
        await _sagas(store, *ids)

        async def race(saga_id: str, handle: Any) -> bool:
            try:
                await _save(handle, saga_id, take("hot"))
            except LockUnavailable:
                return False
            return True

        won = await asyncio.gather(
            *(race(i, store if n % 2 else peer) for n, i in enumerate(ids))
        )
        assert sum(won) == 1
        assert set((await _holders(store)).values()) <= set(ids)
