"""When a ``Worker`` claims: at once when a slot frees, never beyond
``max_active``, and no more often than ``poll_interval`` when nothing is
claimable (on SQLite: the claim loop is the subject, not the store)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step
from sagakit.ports.store import SagaRecord
from sagakit.runtime import Worker

# A worker that slept a poll interval before each claim would need
# SAGAS * LONG_POLL seconds; the test gives it a small fraction of one.
LONG_POLL = 600.0
SAGAS = 40
BOUND = 60.0


class Job(BaseModel):
    index: int = 0


class CountingStore(SQLiteStore):
    """A real SQLite store that counts its claims."""

    claims = 0

    async def claim(self, *args: Any, **kwargs: Any) -> list[SagaRecord]:
        self.claims += 1
        return await super().claim(*args, **kwargs)


class Tally:
    """How many sagas run steps at once, and the most seen."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.now = self.most = self.done = 0
        self.gate = gate

    def saga(self) -> Saga[Job]:
        async def first(ctx: Job) -> None:
            self.now += 1
            self.most = max(self.most, self.now)
            if self.gate is not None:
                await self.gate.wait()

        async def last(ctx: Job) -> None:
            self.now -= 1
            self.done += 1

        return Saga("quick", [Step("one", first), Step("two", last)], context=Job)


async def submit(path: Path, count: int) -> list[str]:
    store = SQLiteStore(path)
    orch = Orchestrator(store, [Tally().saga()])
    saga = orch.definition("quick")
    ids = [await orch.submit(saga, Job(index=i)) for i in range(count)]
    await store.close()
    return ids


async def worker_on(
    db: Path, count: int, max_active: int, gate: asyncio.Event | None = None
) -> tuple[list[str], Tally, CountingStore, Worker]:
    """``count`` sagas submitted to ``db``, and a worker (with a very long
    poll interval) that will count its claims."""
    ids = await submit(db, count)
    tally = Tally(gate)
    store = CountingStore(db)
    w = Worker(store, [tally.saga()], max_active=max_active, poll_interval=LONG_POLL)
    return ids, tally, store, w


async def statuses(path: Path, ids: list[str]) -> set[SagaStatus]:
    store = SQLiteStore(path)
    try:
        return {(await store.get(saga_id)).status for saga_id in ids}
    finally:
        await store.close()


async def test_a_full_worker_claims_as_soon_as_a_saga_ends(tmp_path: Path) -> None:
    db = tmp_path / "sagas.db"
    ids, tally, store, w = await worker_on(db, SAGAS, max_active=1)
    async with asyncio.timeout(BOUND):  # vs SAGAS * LONG_POLL if it slept
        await w.run(until_idle=True)
    await store.close()

    assert w.claimed == SAGAS
    assert tally.done == SAGAS
    assert tally.most == 1  # never more than max_active at once
    assert await statuses(db, ids) == {SagaStatus.SUCCEEDED}


async def test_a_running_worker_claims_again_when_a_saga_ends(tmp_path: Path) -> None:
    db = tmp_path / "sagas.db"
    ids, tally, store, w = await worker_on(db, SAGAS, max_active=3)
    running = asyncio.create_task(w.run())
    try:
        async with asyncio.timeout(BOUND):
            while tally.done < SAGAS:  # noqa: ASYNC110 - the worker runs on this loop
                await asyncio.sleep(0.01)
    finally:
        w.stop()
        await running
        await store.close()
    assert w.claimed == SAGAS
    assert tally.most <= 3
    assert await statuses(db, ids) == {SagaStatus.SUCCEEDED}


async def test_ending_sagas_do_not_make_an_idle_worker_claim(tmp_path: Path) -> None:
    """Nothing left to claim: sagas that end are no reason to ask again
    before the poll interval (no claim per ending saga)."""
    db = tmp_path / "sagas.db"
    gate = asyncio.Event()
    ids, tally, store, w = await worker_on(db, 5, max_active=10, gate=gate)
    running = asyncio.create_task(w.run())
    try:
        async with asyncio.timeout(BOUND):
            while tally.now < 5:  # noqa: ASYNC110 - the worker runs on this loop
                await asyncio.sleep(0.01)
            claims = store.claims  # the 5, then one that found nothing
            gate.set()
            while tally.done < 5:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            while w.orchestrator.active:  # noqa: ASYNC110 - the last commits
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # room for a (wrong) claim after the last end
        assert store.claims == claims == 2
    finally:
        w.stop()
        await running
        await store.close()
    assert await statuses(db, ids) == {SagaStatus.SUCCEEDED}
