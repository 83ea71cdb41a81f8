"""The Worker API in one process: two workers share one SQLite file by leases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step
from sagakit.runtime import Worker

LEASE = 0.5


class Job(BaseModel):
    index: int = 0


Ran = list[tuple[str, int, str, float]]  # (worker, job index, step, when)


def job_saga(ran: Ran, worker: str, gate: asyncio.Event | None = None) -> Saga[Job]:
    """The same saga ("job") as one worker runs it; ``gate`` holds step one."""

    def step(name: str) -> Callable[[Job], Awaitable[str]]:
        async def action(ctx: Job) -> str:
            ran.append((worker, ctx.index, name, time.monotonic()))
            if gate is not None and name == "one":
                await gate.wait()
            await asyncio.sleep(0.001)
            return f"{name}-{ctx.index}"

        return action

    return Saga(
        "job", [Step("one", step("one")), Step("two", step("two"))], context=Job
    )


async def submit(path: Path, count: int) -> list[str]:
    store = SQLiteStore(path)
    orch = Orchestrator(store, [job_saga([], "producer")])
    saga = orch.definition("job")
    ids = [
        await orch.submit(saga, Job(index=i), saga_id=f"job-{i:03d}")
        for i in range(count)
    ]
    await store.close()
    return ids


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 5) -> None:
    """Poll ``check`` until it is true (the workers run on this very loop)."""
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


def worker(path: Path, saga: Saga[Job], worker_id: str, **options: float) -> Worker:
    return Worker(
        SQLiteStore(path),
        [saga],
        worker_id=worker_id,
        lease=LEASE,
        poll_interval=0.01,
        **options,  # type: ignore[arg-type]
    )


async def test_two_workers_split_the_sagas(tmp_path: Path) -> None:
    db = tmp_path / "sagas.db"
    ids = await submit(db, 50)
    ran: Ran = []
    w1 = worker(db, job_saga(ran, "w1"), "w1", max_active=5)
    w2 = worker(db, job_saga(ran, "w2"), "w2", max_active=5)
    async with asyncio.timeout(20):
        await asyncio.gather(w1.run(until_idle=True), w2.run(until_idle=True))

    assert w1.claimed > 0
    assert w2.claimed > 0
    assert w1.claimed + w2.claimed == len(ids)
    store = SQLiteStore(db)
    for i, saga_id in enumerate(ids):
        record = await store.get(saga_id)
        assert record.status is SagaStatus.SUCCEEDED, saga_id
        claims = [
            h.result["worker"]
            for h in await store.history(saga_id)
            if h.kind == "saga" and h.outcome == "claimed"
        ]
        assert len(claims) == 1, (saga_id, claims)
        # every step ran once, on the worker that claimed the saga
        assert sorted((w, s) for w, n, s, _ in ran if n == i) == [
            (claims[0], "one"),
            (claims[0], "two"),
        ]
    await store.close()
    for w in (w1, w2):
        await w.orchestrator.store.close()


async def test_stop_returns_promptly(tmp_path: Path) -> None:
    db = tmp_path / "sagas.db"
    await submit(db, 3)
    w = Worker(SQLiteStore(db), [job_saga([], "w")], lease=LEASE, poll_interval=30)
    running = asyncio.create_task(w.run())

    async def finished() -> bool:
        return w.claimed == 3 and not w.orchestrator.active

    await until(finished)
    began = time.monotonic()
    w.stop()  # the worker sleeps 30 s between claims; stop() wakes it up
    async with asyncio.timeout(2):
        await running
    assert time.monotonic() - began < 1
    await w.orchestrator.store.close()


async def test_expired_lease_is_taken_over(tmp_path: Path) -> None:
    db = tmp_path / "sagas.db"
    (saga_id,) = await submit(db, 1)
    ran: Ran = []
    # "dead" claims the saga, hangs in step one and is cancelled: it dies
    # without releasing, so its lease has to run out
    dead = worker(db, job_saga(ran, "dead", gate=asyncio.Event()), "dead")
    running = asyncio.create_task(dead.run())

    async def hanging() -> bool:
        return bool(ran)

    await until(hanging)
    claimed_at = ran[0][3]
    running.cancel()
    async with asyncio.timeout(2):  # at once: no drain, no release
        await asyncio.wait([running])
    assert running.cancelled()
    assert dead.orchestrator.active == 0

    heir = worker(db, job_saga(ran, "heir"), "heir")
    store = SQLiteStore(db)
    taking_over = asyncio.create_task(heir.run())

    async def ended() -> bool:
        return (await store.get(saga_id)).status.terminal

    await until(ended)
    heir.stop()
    await taking_over

    record = await store.get(saga_id)
    assert record.status is SagaStatus.SUCCEEDED
    assert [(w, s) for w, _, s, _ in ran] == [
        ("dead", "one"),
        ("heir", "one"),  # in flight when "dead" died: runs again
        ("heir", "two"),
    ]
    assert ran[1][3] - claimed_at >= LEASE * 0.9  # not before the lease ran out
    history = await store.history(saga_id)
    # "dead" took the submitted saga from nobody: its claim changed nothing
    # to commit (its line waited for its next commit, which never came); the
    # heir took it from "dead" with step one in flight: a crash, committed
    claims = [h.result for h in history if h.outcome == "claimed"]
    assert claims == [{"worker": "heir"}]
    assert record.state.step("one").crashes == 1
    for s in (store, dead.orchestrator.store, heir.orchestrator.store):
        await s.close()


async def test_a_submitted_saga_is_not_a_crash_at_its_first_claim(
    tmp_path: Path,
) -> None:
    """A producer's saga, leased to nobody, runs at its first claim even when
    one crash parks a saga: nothing crashed."""
    db = tmp_path / "sagas.db"
    (saga_id,) = await submit(db, 1)
    ran: Ran = []
    w = worker(db, job_saga(ran, "w"), "w", max_crash_attempts=1)
    await asyncio.wait_for(w.run(until_idle=True), timeout=20)
    store = SQLiteStore(db)
    record = await store.get(saga_id)
    assert record.status is SagaStatus.SUCCEEDED, record.state.parked
    assert record.state.step("one").crashes == 0
    assert [s for _, _, s, _ in ran] == ["one", "two"]
    for s in (store, w.orchestrator.store):
        await s.close()
