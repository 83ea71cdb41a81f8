"""Group commit: concurrent writes of different sagas share one commit, each
caller still waits for its own write to be durable and sees only its own
failure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from sagakit import ConcurrencyError, Orchestrator, Saga, SagaStatus, Step, StoreError
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.store.sqlite import SQLiteStore
from sagakit.runtime.group import GATHER_TURNS, Batcher, GroupCommit, saves_of
from sagakit.testing.contracts.records import entry, make_record


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "group.db")


async def test_concurrent_creates_and_saves_share_a_commit(store: SQLiteStore) -> None:
    group = GroupCommit(store)
    ids = [f"s{i}" for i in range(20)]
    before = store.commits

    created = await asyncio.gather(
        *(group.create(make_record(i), [entry(i, "started")]) for i in ids)
    )
    assert all(c.created for c in created)
    assert store.commits == before + 1

    await asyncio.gather(
        *(group.save(replace(make_record(i), version=2), 1, []) for i in ids)
    )
    assert store.commits == before + 2
    assert (group.batches, group.writes) == (2, 40)
    assert {(await store.get(i)).version for i in ids} == {2}


async def test_a_write_is_durable_when_its_caller_resumes(store: SQLiteStore) -> None:
    group = GroupCommit(store)
    await store.create(make_record("s1"), [])
    other = SQLiteStore(store.database.path)  # another connection sees commits only

    await group.save(replace(make_record("s1"), version=2), 1, [entry("s1", "ok")])

    assert (await other.get("s1")).version == 2
    await other.close()


async def test_a_refused_save_fails_only_its_caller(store: SQLiteStore) -> None:
    group = GroupCommit(store)
    for i in ("s1", "s2"):
        await store.create(make_record(i), [])

    done = await asyncio.gather(
        group.save(replace(make_record("s1"), version=2), 1, []),
        group.save(replace(make_record("s2"), version=2), 7, []),  # stale
        return_exceptions=True,
    )

    assert done[0] is None
    assert isinstance(done[1], ConcurrencyError)
    assert (await store.get("s1")).version == 2
    assert (group.batches, group.writes) == (1, 2)


async def test_a_batch_that_fails_is_retried_one_by_one(store: SQLiteStore) -> None:
    """A history line of no saga is refused (NOT NULL): the batch's
    transaction fails; the other saves commit alone and only that caller
    sees the store error."""
    group = GroupCommit(store)
    for i in ("s1", "s2", "s3"):
        await store.create(make_record(i), [])

    done = await asyncio.gather(
        group.save(replace(make_record("s1"), version=2), 1, []),
        group.save(replace(make_record("s2"), version=2), 1, [entry("nope", "ok")]),
        group.save(replace(make_record("s3"), version=2), 1, []),
        return_exceptions=True,
    )

    assert done[0] is None
    assert done[2] is None
    assert isinstance(done[1], StoreError)
    assert [(await store.get(i)).version for i in ("s1", "s2", "s3")] == [2, 1, 2]


async def test_a_caller_cancelled_before_its_batch_writes_nothing(
    store: SQLiteStore,
) -> None:
    group = GroupCommit(store)
    await store.create(make_record("s1"), [])

    task = asyncio.create_task(group.save(replace(make_record("s1"), version=2), 1, []))
    await asyncio.sleep(0)  # queued, not yet flushed
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.01)

    assert (await store.get("s1")).version == 1
    assert group.writes == 0


def test_only_stores_that_batch_are_grouped(store: SQLiteStore) -> None:
    assert isinstance(saves_of(store), GroupCommit)
    assert saves_of(store, group=False) is store
    memory = InMemoryStore()
    assert saves_of(memory) is memory
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(store, max_batch=0)


async def test_sagas_in_flight_commit_together_and_end_right(
    store: SQLiteStore,
) -> None:
    async def act(ctx: object) -> None:
        await asyncio.sleep(0)

    async def boom(ctx: object) -> None:
        raise RuntimeError("no")

    good = Saga("good", [Step("a", act, compensate=act), Step("b", act)])
    bad = Saga("bad", [Step("a", act, compensate=act), Step("b", boom)])
    orchestrator = Orchestrator(store, [good, bad])
    before = store.commits

    results = await asyncio.gather(
        *(orchestrator.run(good) for _ in range(25)),
        *(orchestrator.run(bad) for _ in range(25)),
    )

    statuses = [r.status for r in results]
    assert statuses == [SagaStatus.SUCCEEDED] * 25 + [SagaStatus.COMPENSATED] * 25
    # alone: 3 commits per good saga, 5 per bad one (250); together far fewer
    assert store.commits - before < 50
    for result in results:
        stored = await store.get(result.saga_id)
        assert stored.status is result.status


async def test_a_lone_saga_writes_at_once(store: SQLiteStore) -> None:
    """One saga at a time has nobody to share a commit with: its writes go
    straight to the store, without waiting a turn of the loop for a batch."""

    async def act(ctx: object) -> None:
        return None

    saga = Saga("lone", [Step("a", act, compensate=act), Step("b", act)])
    orchestrator = Orchestrator(store, [saga])
    group = orchestrator.driver.saves
    assert isinstance(group, GroupCommit)

    for _ in range(5):
        assert (await orchestrator.run(saga)).status is SagaStatus.SUCCEEDED

    assert group.writes == 0  # none waited for a batch


async def test_sagas_started_together_share_commits_even_without_yielding(
    store: SQLiteStore,
) -> None:
    """Steps that never yield run a saga to its end in one go; started
    together, the others wait on the loop, so their writes are batched."""

    async def act(ctx: object) -> None:
        return None

    saga = Saga("eager", [Step("a", act, compensate=act), Step("b", act)])
    orchestrator = Orchestrator(store, [saga])
    before = store.commits

    results = await asyncio.gather(*(orchestrator.run(saga) for _ in range(30)))

    assert {r.status for r in results} == {SagaStatus.SUCCEEDED}
    assert store.commits - before < 30  # alone: 3 commits each, 90


async def _trickle(group: GroupCommit, ids: list[str]) -> None:
    """One save per turn of the event loop, as a broker's deliveries come."""

    async def later(i: int, saga_id: str) -> None:
        for _ in range(i):
            await asyncio.sleep(0)
        await group.save(replace(make_record(saga_id), version=2), 1, [])

    await asyncio.gather(*(later(i, s) for i, s in enumerate(ids)))


async def test_saves_that_come_a_turn_apart_share_a_commit_on_a_blocking_store(
    store: SQLiteStore,
) -> None:
    """SQLite commits on the loop's thread, so nothing queues while it
    commits: the batch waits while each turn of the loop brings a save."""
    ids = [f"s{i}" for i in range(6)]
    for i in ids:
        await store.create(make_record(i), [])
    group = GroupCommit(store, driven=lambda: len(ids))
    before = store.commits

    await _trickle(group, ids)

    assert store.commits == before + 1
    assert (group.batches, group.writes) == (1, len(ids))
    assert {(await store.get(i)).version for i in ids} == {2}


async def test_the_wait_for_more_saves_is_bounded(store: SQLiteStore) -> None:
    """At most GATHER_TURNS turns: a save per turn for longer than that
    takes more than one commit, and a full batch goes at once."""
    ids = [f"s{i}" for i in range(3 * GATHER_TURNS)]
    for i in ids:
        await store.create(make_record(i), [])
    group = GroupCommit(store, driven=lambda: len(ids))

    await _trickle(group, ids)

    assert 2 <= group.batches < len(ids)
    assert group.writes == len(ids)

    full = GroupCommit(store, max_batch=2, driven=lambda: len(ids))
    await asyncio.gather(
        *(full.save(replace(make_record(i), version=3), 2, []) for i in ids[:4])
    )
    assert (full.batches, full.writes) == (2, 4)


class _Recording:
    """A kind of write that records the size of each batch it commits."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def order(self, write: int) -> int:
        return write

    async def one(self, write: int) -> None:
        self.sizes.append(1)

    async def many(self, writes: Sequence[int]) -> list[None]:
        self.sizes.append(len(writes))
        return [None for _ in writes]


async def _queued_a_turn_apart(batcher: Batcher[int], kind: _Recording) -> None:
    async def later(i: int) -> None:
        for _ in range(i):
            await asyncio.sleep(0)
        await batcher.queued(kind, i)

    await asyncio.gather(*(later(i) for i in range(6)))


async def test_only_a_blocking_store_waits_for_more_saves(store: SQLiteStore) -> None:
    """PostgreSQL and MySQL take new saves while a commit is in flight, so
    their batches go on the next turn, whatever comes after; SQLite's wait
    while each turn brings more."""
    assert GroupCommit(store).gather_turns == GATHER_TURNS

    class Yielding(InMemoryStore):
        blocking_writes = False

    assert GroupCommit(Yielding()).gather_turns == 0  # type: ignore[arg-type]

    kind = _Recording()
    await _queued_a_turn_apart(Batcher((kind,)), kind)
    assert len(kind.sizes) > 1
    kind = _Recording()
    await _queued_a_turn_apart(Batcher((kind,), gather_turns=GATHER_TURNS), kind)
    assert kind.sizes == [6]


def test_gather_turns_are_checked() -> None:
    with pytest.raises(ValueError, match="gather_turns"):
        Batcher((), gather_turns=-1)


async def test_one_quiet_turn_does_not_close_a_batch() -> None:
    """A delivery read in one turn runs in the next: a write every other
    turn still joins the batch; two quiet turns in a row close it."""
    kind = _Recording()
    batcher: Batcher[int] = Batcher((kind,), gather_turns=GATHER_TURNS)

    async def later(i: int, turns: int) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
        await batcher.queued(kind, i)

    await asyncio.gather(later(0, 0), later(1, 2), later(2, 4))
    assert kind.sizes == [3]

    kind.sizes.clear()
    await asyncio.gather(later(0, 0), later(1, 5))
    assert kind.sizes == [1, 1]
