"""Several processes start a saga with the same idempotency key at the same
instant (released together by a barrier): one instance is created, its step
runs once, and every caller gets that instance and its result. On SQLite
and PostgreSQL, real processes, a fresh key each round."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SagaStatus, Step
from sagakit.adapters.store import open_database, open_store_async

pytestmark = pytest.mark.slow

PROCESSES = 3
ROUNDS = 12


class Order(BaseModel):
    round: int


def saga_for(effects: Path) -> Saga[Order]:
    async def charge(ctx: Order) -> int:
        with effects.open("a") as f:
            f.write(f"{ctx.round} {os.getpid()}\n")
        return ctx.round

    return Saga("charge_once", [Step("charge", charge)], context=Order)


def caller(url: str, effects: str, barrier: Any, answers: Any) -> None:
    """A process: open the store, then for each round wait at the barrier
    and start the round's saga under the round's key."""

    async def main() -> None:
        definition = saga_for(Path(effects))
        store = await open_store_async(url)
        orchestrator = Orchestrator(store, [definition])
        try:
            for n in range(ROUNDS):
                await asyncio.to_thread(barrier.wait, 60)
                result = await orchestrator.run(
                    definition, Order(round=n), idempotency_key=f"order-{n}"
                )
                answers.put((n, result.saga_id, result.status.value, result.results))
        finally:
            await orchestrator.close()
            await store.close()

    asyncio.run(main())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "sagas.db")
    found: str = request.getfixturevalue("pg_url")
    return found


async def test_one_instance_per_key_and_every_caller_gets_it(
    url: str, tmp_path: Path
) -> None:
    async with await open_database(url):  # migrated before the race
        pass
    effects = tmp_path / "effects.txt"
    effects.touch()
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(PROCESSES)
    answers = spawn.Queue()
    processes = [
        spawn.Process(target=caller, args=(url, str(effects), barrier, answers))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    got = [
        await asyncio.to_thread(answers.get, True, 60)
        for _ in range(PROCESSES * ROUNDS)
    ]
    for process in processes:
        await asyncio.to_thread(process.join, 60)
        assert process.exitcode == 0

    by_round: dict[int, set[tuple[str, str, str]]] = {}
    for n, saga_id, status, results in got:
        by_round.setdefault(n, set()).add((saga_id, status, repr(results)))
    assert sorted(by_round) == list(range(ROUNDS))
    for n, seen in by_round.items():  # every caller: the same instance, its result
        assert len(seen) == 1, seen
        ((_, status, results),) = seen
        assert (status, results) == ("succeeded", repr({"charge": n}))
    ran = Counter(int(line.split()[0]) for line in effects.read_text().splitlines())
    assert ran == dict.fromkeys(range(ROUNDS), 1)  # each step ran once
    store = await open_store_async(url)
    try:
        assert await store.count_by_status() == {SagaStatus.SUCCEEDED: ROUNDS}
    finally:
        await store.close()
