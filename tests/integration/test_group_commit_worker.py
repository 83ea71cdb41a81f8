"""Group commit under a Worker, on each SQL store: the sagas a worker drives
at once share commits, and every one of them ends with its whole history."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SagaNotFound, SagaStatus, Step, StoreError
from sagakit.runtime import Worker
from sagakit.runtime.group import BatchingStore, GroupCommit
from sagakit.testing.contracts.records import entry, make_record
from tests.conftest import OpenSagaStore

SAGAS = 60


class Job(BaseModel):
    n: int


def job_saga() -> Saga[Job]:
    async def act(ctx: Job) -> int:
        await asyncio.sleep(0.001)  # an I/O-bound step: the sagas overlap
        return ctx.n

    async def undo(ctx: Job) -> None:
        return None

    async def maybe_fail(ctx: Job) -> None:
        if ctx.n % 3 == 0:
            raise RuntimeError(f"job {ctx.n} refused")

    return Saga(
        "job",
        [
            Step("reserve", act, compensate=undo),
            Step("charge", act, compensate=undo),
            Step("confirm", maybe_fail),
        ],
        context=Job,
    )


async def test_a_worker_shares_commits_and_loses_nothing(
    open_saga_store: OpenSagaStore,
) -> None:
    saga = job_saga()
    producer = Orchestrator(await open_saga_store(), [saga])
    ids = [await producer.submit(saga, Job(n=n)) for n in range(SAGAS)]
    store = await open_saga_store()
    worker = Worker(store, [saga], lease=30.0, poll_interval=0.05, max_active=SAGAS)
    before = store.commits  # type: ignore[attr-defined]

    await asyncio.wait_for(worker.run(until_idle=True), timeout=60)

    # alone: a claim (which commits nothing more: a submitted saga was
    # leased to nobody, so no crash is counted), then 3 commits per success
    # and 5 per failure (~220); together far fewer
    commits = store.commits - before  # type: ignore[attr-defined]
    print(f"{commits / SAGAS:.2f} commits per saga")
    assert commits < SAGAS * 2
    for n, saga_id in enumerate(ids):
        record = await store.get(saga_id)
        failing = n % 3 == 0
        expected = SagaStatus.COMPENSATED if failing else SagaStatus.SUCCEEDED
        assert record.status is expected, (saga_id, record.status)
        kinds = [
            (h.step, h.kind, h.outcome)
            for h in await store.history(saga_id)
            if h.outcome != "claimed"  # the worker's claim, a line of its own
        ]
        assert kinds[0] == (None, "saga", "started")
        assert kinds[1:3] == [
            ("reserve", "action", "succeeded"),
            ("charge", "action", "succeeded"),
        ]
        assert kinds[-1] == (None, "saga", expected.value)
        if failing:
            assert kinds[3:-1] == [
                ("confirm", "action", "failed"),
                ("charge", "compensation", "succeeded"),
                ("reserve", "compensation", "succeeded"),
            ]
        else:
            assert kinds[3:-1] == [("confirm", "action", "succeeded")]


async def yielding_saga(
    open_saga_store: OpenSagaStore, name: str
) -> tuple[Orchestrator, GroupCommit, Saga[object]]:
    """An orchestrator on this test's store, what it saves through and a
    2-step saga whose steps yield to the loop once."""

    async def act(ctx: object) -> None:
        await asyncio.sleep(0)

    saga: Saga[object] = Saga(name, [Step("a", act, compensate=act), Step("b", act)])
    orchestrator = Orchestrator(await open_saga_store(), [saga])
    group = orchestrator.driver.saves
    assert isinstance(group, GroupCommit)
    return orchestrator, group, saga


async def test_sagas_in_step_share_each_commit(open_saga_store: OpenSagaStore) -> None:
    """Sagas started together and resumed together: the first of them to
    write does not go alone (while the others are about to write too) but
    shares the batch of the rest, on the stores that write without blocking
    the loop (PostgreSQL, MySQL) as on SQLite."""
    orchestrator, group, saga = await yielding_saga(open_saga_store, "wave")

    results = await asyncio.gather(*(orchestrator.run(saga) for _ in range(40)))

    assert {r.status for r in results} == {SagaStatus.SUCCEEDED}
    # create, a, b: 3 transitions per saga, every one in a batch
    assert group.writes == 3 * len(results)
    await orchestrator.close()


async def test_a_lone_saga_writes_at_once(open_saga_store: OpenSagaStore) -> None:
    """One saga at a time has nobody to share a commit with: its writes go
    straight to the store, on every store."""
    orchestrator, group, saga = await yielding_saga(open_saga_store, "lone")

    for _ in range(3):
        assert (await orchestrator.run(saga)).status is SagaStatus.SUCCEEDED

    assert group.writes == 0  # none waited for a batch
    await orchestrator.close()


async def test_a_line_of_another_saga_fails_only_its_own_write(
    open_saga_store: OpenSagaStore,
) -> None:
    """A write given a history line of another saga of its batch: the store
    refuses the batch, group commit writes each alone, and only that write
    fails; nothing of it is stored (PostgreSQL's one-statement batch filed
    the line under that other saga, MySQL's too)."""
    store: BatchingStore = await open_saga_store()  # type: ignore[assignment]
    group = GroupCommit(store)

    created = await asyncio.gather(
        group.create(make_record("c1"), [entry("c1", "started")]),
        group.create(make_record("c2"), [entry("c3", "misfiled")]),
        group.create(make_record("c3"), [entry("c3", "started")]),
        return_exceptions=True,
    )
    saved = await asyncio.gather(
        group.save(replace(make_record("c1"), version=2), 1, [entry("c1", "ok")]),
        group.save(replace(make_record("c3"), version=2), 1, [entry("c1", "x")]),
        return_exceptions=True,
    )

    assert isinstance(created[1], StoreError)
    assert isinstance(saved[1], StoreError)
    assert [getattr(c, "created", None) for c in created] == [True, None, True]
    assert saved[0] is None
    with pytest.raises(SagaNotFound):
        await store.get("c2")
    assert [(await store.get(i)).version for i in ("c1", "c3")] == [2, 1]
    assert [h.outcome for h in await store.history("c1")] == ["started", "ok"]
    assert [h.outcome for h in await store.history("c3")] == ["started"]
    assert await store.history("c2") == []
