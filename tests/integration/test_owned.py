"""Owned sagas in one process: heartbeat, lost leases, draining."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step


class Ctx(BaseModel):
    pause: float = 0.0


def slow_saga(log: list[str], gate: asyncio.Event | None = None) -> Saga[Ctx]:
    def make(step: str):  # type: ignore[no-untyped-def]
        async def action(ctx: Ctx) -> str:
            log.append(f"{step} begin")
            if gate is not None and step == "one":
                await gate.wait()
            await asyncio.sleep(ctx.pause)
            log.append(f"{step} end")
            return step

        return action

    return Saga(
        "slow", [Step(s, make(s)) for s in ("one", "two", "three")], context=Ctx
    )


async def test_the_heartbeat_keeps_a_long_step_owned_then_stops(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    saga = slow_saga(log)
    orch = Orchestrator(SQLiteStore(tmp_path / "s.db"), [saga], lease=0.3)
    other = Orchestrator(SQLiteStore(tmp_path / "s.db"), [saga], lease=0.3)
    running = asyncio.create_task(orch.run(saga, Ctx(pause=0.4)))
    for _ in range(8):  # well past the lease: the heartbeat renews it
        await asyncio.sleep(0.1)
        assert await other.recover() == []
    result = await running
    assert result.status is SagaStatus.SUCCEEDED
    assert log.count("one begin") == 1
    assert orch.driver.beat is not None
    await asyncio.sleep(0)
    assert orch.driver.beat._task is None  # nothing driven: no task left


async def test_a_lost_lease_stops_the_saga_before_its_next_step(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    gate = asyncio.Event()
    saga = slow_saga(log, gate)
    store = SQLiteStore(tmp_path / "s.db")
    orch = Orchestrator(store, [saga])
    saga_id = await orch.start(saga)
    while "one begin" not in log:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    taken = await store.claim("thief", ["slow"], lease=30, gone=[orch.worker_id])
    assert [r.saga_id for r in taken] == [saga_id]
    gate.set()
    await orch.drain()
    assert log == ["one begin", "one end"]  # "two" never started here
    assert orch.active == 0


async def test_stop_drains_steps_in_flight_and_releases_the_sagas(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    saga = slow_saga(log)
    orch = Orchestrator(SQLiteStore(tmp_path / "s.db"), [saga])
    ids = [await orch.start(saga, Ctx(pause=0.2)) for _ in range(3)]
    while log.count("one begin") < len(ids):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    assert sorted(await orch.stop()) == sorted(ids)
    assert log.count("one end") == len(ids)  # finished, not cancelled
    assert "two begin" not in log  # no next step
    assert await orch.recover() == []  # a stopped orchestrator takes nothing
    # released: a worker that waits out leases takes them at once
    heir = Orchestrator(SQLiteStore(tmp_path / "s.db"), [saga], lease=30)
    assert sorted(await heir.recover()) == sorted(ids)
    for saga_id in ids:
        assert (await heir.wait(saga_id)).status is SagaStatus.SUCCEEDED
    assert log.count("one begin") == len(ids)
    assert log.count("two begin") == len(ids)
