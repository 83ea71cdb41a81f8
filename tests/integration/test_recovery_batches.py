"""Recovery batch by batch, counts and id prefixes on real stores (SQLite,
PostgreSQL): every unfinished saga is resumed however many there are, the
name filter holds behind many older sagas of other definitions, and the
counts the store keeps agree with the sagas it holds."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from sagakit import Orchestrator, Saga, SagaError, SagaStatus, Step, admin
from sagakit.adapters.store import Database
from sagakit.errors import SagaNotFound
from sagakit.ports.store import SagaStore
from sagakit.runtime.owners import HOST
from sagakit.runtime.recovery import RecoveryProgress

ONE_STEP: Saga[Any] = Saga("one_step", [Step("a", lambda ctx: "done")])
OTHER: Saga[Any] = Saga("other", [Step("b", lambda ctx: "done")])


@pytest.fixture
def store(sql_database: Database) -> SagaStore:
    """The saga store of a fresh database of each dialect (conftest)."""
    return sql_database.sagas


async def submitted(store: SagaStore, saga: Saga[Any], n: int) -> list[str]:
    producer = Orchestrator(store, [saga])
    return [await producer.submit(saga) for _ in range(n)]


async def test_recover_resumes_every_batch(store: SagaStore) -> None:
    ids = await submitted(store, ONE_STEP, 23)
    orchestrator = Orchestrator(store, [ONE_STEP])
    seen: list[RecoveryProgress] = []

    resumed = await orchestrator.recover(batch=5, progress=seen.append)

    assert sorted(resumed) == sorted(ids)
    assert [p.claimed for p in seen] == [5, 10, 15, 20, 23]
    assert [p.exhausted for p in seen] == [False] * 4 + [True]
    assert seen[-1] == RecoveryProgress(5, 23, 23, exhausted=True)
    await asyncio.wait_for(orchestrator.drain(), 30)
    assert await store.count_by_status(ONE_STEP.name) == {SagaStatus.SUCCEEDED: 23}
    assert await orchestrator.unfinished() == 0
    assert await orchestrator.recover(batch=5) == []


async def test_a_limit_caps_a_recovery_and_the_next_takes_the_rest(
    store: SagaStore,
) -> None:
    ids = await submitted(store, ONE_STEP, 12)
    first = Orchestrator(store, [ONE_STEP])
    seen: list[RecoveryProgress] = []

    taken = await first.recover(limit=7, batch=5, progress=seen.append)

    assert [p.claimed for p in seen] == [5, 7]
    assert not seen[-1].exhausted
    assert taken == ids[:7]  # oldest first
    await asyncio.wait_for(first.drain(), 30)
    assert await first.unfinished() == 5
    rest = await Orchestrator(store, [ONE_STEP]).recover(batch=2)
    assert rest == ids[7:]


async def test_the_name_filter_holds_behind_many_older_sagas(
    store: SagaStore,
) -> None:
    older = await submitted(store, OTHER, 300)  # not registered by the worker
    ids = await submitted(store, ONE_STEP, 30)
    assert await store.unfinished([ONE_STEP.name], limit=30) == ids
    orchestrator = Orchestrator(store, [ONE_STEP])

    resumed = await orchestrator.recover(batch=10)

    assert sorted(resumed) == sorted(ids)
    await asyncio.wait_for(orchestrator.drain(), 30)
    assert await store.unfinished([OTHER.name], limit=1000) == older
    assert await store.count_by_status() == {
        SagaStatus.RUNNING: 300,
        SagaStatus.SUCCEEDED: 30,
    }


async def test_batches_leave_what_a_live_worker_holds(store: SagaStore) -> None:
    ids = await submitted(store, ONE_STEP, 9)
    held = await store.claim("live-peer", [ONE_STEP.name], lease=60, limit=3)
    assert [r.saga_id for r in held] == ids[:3]
    worker = Orchestrator(store, [ONE_STEP], lease=30)

    resumed = await worker.recover(batch=2)

    assert resumed == ids[3:]
    await asyncio.wait_for(worker.drain(), 30)
    assert await worker.unfinished() == 3  # the peer's
    await worker.stop_driving()


async def test_a_paused_saga_is_taken_once_per_pass(store: SagaStore) -> None:
    """``sagakit recover`` lets each batch end: a paused saga is parked and
    released, yet the pass goes on after it instead of taking it again."""
    ids = await submitted(store, ONE_STEP, 3)
    await admin.pause(store, [ONE_STEP], ids[1], by="test", reason="hold it")
    orchestrator = Orchestrator(store, [ONE_STEP])
    recovery = orchestrator.recovery(batch=1)
    while not recovery.done:
        await recovery.next_batch()
        await asyncio.wait_for(orchestrator.drain(), 30)
        assert recovery.progress.batches <= 4

    assert recovery.progress.claimed == 3
    assert recovery.exhausted
    assert (await store.get(ids[1])).state.paused
    assert await orchestrator.unfinished() == 1
    await orchestrator.stop_driving()


async def test_bad_batches_and_limits_are_refused(store: SagaStore) -> None:
    orchestrator = Orchestrator(store, [ONE_STEP])
    with pytest.raises(SagaError, match="batch must be at least 1"):
        await orchestrator.recover(batch=0)
    with pytest.raises(SagaError, match="limit must be >= 0"):
        await orchestrator.recover(limit=-1)
    assert await orchestrator.recover(limit=0) == []


async def test_counts_agree_with_the_sagas_after_a_mixed_run(
    store: SagaStore,
) -> None:
    def fail(ctx: object) -> None:
        raise RuntimeError("declined")

    failing: Saga[Any] = Saga(
        "failing",
        [Step("a", lambda ctx: 1, compensate=lambda ctx, r: None), Step("b", fail)],
    )
    orchestrator = Orchestrator(store, [ONE_STEP, failing])
    for _ in range(4):
        await orchestrator.run(ONE_STEP)
    for _ in range(3):
        await orchestrator.run(failing)
    await submitted(store, OTHER, 2)
    expected = {
        SagaStatus.SUCCEEDED: 4,
        SagaStatus.COMPENSATED: 3,
        SagaStatus.RUNNING: 2,
    }
    assert await store.count_by_status() == expected
    assert await store.count_by_status("failing") == {SagaStatus.COMPENSATED: 3}
    by_listing: dict[SagaStatus, int] = {}
    for record in await store.list_sagas(limit=100):
        by_listing[record.status] = by_listing.get(record.status, 0) + 1
    assert by_listing == expected


async def test_an_ambiguous_prefix_is_reported_with_its_first_matches(
    store: SagaStore,
) -> None:
    producer = Orchestrator(store, [ONE_STEP])
    for suffix in ("5", "1", "4", "2", "3"):
        await producer.submit(ONE_STEP, saga_id=f"feedbeef{suffix}")
    await producer.submit(ONE_STEP, saga_id="feedbeef1/child")
    await producer.submit(ONE_STEP, saga_id="feedbeeg0")

    with pytest.raises(SagaNotFound) as ambiguous:
        await admin.find(store, "feedbeef")
    assert str(ambiguous.value) == (
        "id prefix 'feedbeef' is ambiguous: feedbeef1, feedbeef1/child, feedbeef2, ..."
    )
    assert (await admin.find(store, "feedbeef1")).saga_id == "feedbeef1"  # an id
    assert (await admin.find(store, "feedbeeg")).saga_id == "feedbeeg0"
    assert (await admin.find(store, "feedbeef1/")).saga_id == "feedbeef1/child"
    with pytest.raises(SagaNotFound, match="no saga with id or id prefix"):
        await admin.find(store, "feedbeeh")


async def test_passes_a_moment_apart_take_every_saga_of_a_dead_owner(
    store: SagaStore,
) -> None:
    """Owners are looked at once a second (OWNER_CHECK); a worker with room
    for two sagas takes the rest of a dead process's sagas in its next
    passes, not once their leases run out (a minute here)."""
    ids = await submitted(store, ONE_STEP, 6)
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await child.wait()
    dead = f"{HOST}:{child.pid}:abcdef-1"
    held = await store.claim(dead, [ONE_STEP.name], lease=60, limit=10)
    assert sorted(r.saga_id for r in held) == sorted(ids)
    heir = Orchestrator(store, [ONE_STEP])

    taken = [await heir.recover(limit=2) for _ in range(3)]

    assert [len(t) for t in taken] == [2, 2, 2]
    assert sorted(i for t in taken for i in t) == sorted(ids)
    await asyncio.wait_for(heir.drain(), 30)
    assert await store.count_by_status(ONE_STEP.name) == {SagaStatus.SUCCEEDED: 6}
