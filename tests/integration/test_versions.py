"""Definition versions with real recover() on SQLite and PostgreSQL.

The issue's scenario: ``order`` v1 ``[a, b, c]`` is killed while ``b`` runs;
the next release defines v2 ``[x, a, b2, c]``. A process with only v2 must
not drive the old instance (``x`` never runs on it, ``b2`` never runs on
it): the instance waits, with the reason, until a process with v1 finishes
it on v1.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step
from sagakit.dashboard import create_app
from sagakit.definition.migration import Migration
from sagakit.ports.store import SagaStore
from sagakit.runtime.clock import SystemClock
from sagakit.runtime.migrate import LeftWaiting, migratable, migrate_instance
from sagakit.runtime.registry import Registry
from sagakit.runtime.worker import Worker
from tests.conftest import OpenSagaStore


class Order(BaseModel):
    amount: int = 0


def step(log: list[str], name: str) -> Step:
    async def action(ctx: Order) -> str:
        log.append(name)
        return name

    return Step(name, action)


def v1(log: list[str], stuck: asyncio.Event | None = None) -> Saga[Order]:
    async def b(ctx: Order) -> str:
        log.append("b")
        if stuck is not None:
            stuck.set()
            await asyncio.sleep(60)  # the process is killed here
        return "b"

    return Saga("order", [step(log, "a"), Step("b", b), step(log, "c")], context=Order)


def v2(log: list[str]) -> Saga[Order]:
    names = ["x", "a", "b2", "c"]
    return Saga("order", [step(log, n) for n in names], context=Order, version=2)


async def killed_in_b(open_saga_store: OpenSagaStore, log: list[str]) -> str:
    """An instance of v1 whose process died while ``b`` ran."""
    stuck = asyncio.Event()
    saga = v1(log, stuck)
    # every process owns what it drives; a short lease stands for a killed
    # process's lease running out (a dead pid on this host is tested in e2e)
    crashed = Orchestrator(await open_saga_store(), [saga], lease=0.2)
    saga_id = await crashed.start(saga)
    await asyncio.wait_for(stuck.wait(), 5)
    for task in list(crashed.driver.tasks):  # abandoned, as a killed process
        task.cancel()
    await asyncio.sleep(0.3)
    return saga_id


@pytest.mark.parametrize("lease", [None, 30.0])
async def test_a_release_without_the_old_version_leaves_the_instance_waiting(
    open_saga_store: OpenSagaStore,
    lease: float | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    saga_id = await killed_in_b(open_saga_store, log)
    assert log == ["a", "b"]

    store = await open_saga_store()
    new_release = Orchestrator(store, [v2(log)], lease=lease)
    caplog.set_level("WARNING", logger="sagakit.runtime.migrate")
    assert await new_release.recover() == []
    assert await new_release.recover() == []  # not claimed in a loop either
    reason = "needs order v1, not registered here (have v2)"
    said = [r.getMessage() for r in caplog.records if r.name.endswith("migrate")]
    assert said == [f"1 saga(s) of order v1 left waiting: {reason}"]  # once
    assert await new_release.waiting() == [LeftWaiting("order", 1, 1, reason)]
    await asyncio.sleep(0.05)
    assert log == ["a", "b"]  # x, b2 and c never ran on the old instance
    record = await store.get(saga_id)
    assert record.status is SagaStatus.RUNNING
    assert record.definition_version == 1
    assert record.fingerprint == v1([]).fingerprint
    assert record.waiting == "needs order v1, not registered here (have v2)"
    assert new_release.active == 0

    both = Orchestrator(await open_saga_store(), [v1(log), v2(log)], lease=lease)
    assert await both.recover() == [saga_id]
    result = await asyncio.wait_for(both.wait(saga_id), 5)
    assert result.status is SagaStatus.SUCCEEDED
    assert log == ["a", "b", "b", "c"]  # finished on v1: b again, then c
    assert result.results == {"a": "a", "b": "b", "c": "c"}
    assert (await store.get(saga_id)).waiting is None
    assert await both.waiting() == []


async def test_new_instances_start_on_the_newest_version(
    open_saga_store: OpenSagaStore,
) -> None:
    log: list[str] = []
    store = await open_saga_store()
    orch = Orchestrator(store, [v2(log), v1(log)])
    result = await orch.run(orch.definition("order"), Order())
    assert result.status is SagaStatus.SUCCEEDED
    record = await store.get(result.saga_id)
    assert (record.definition_version, record.fingerprint) == (2, v2([]).fingerprint)
    assert log == ["x", "a", "b2", "c"]


async def test_a_changed_shape_under_the_same_version_is_not_driven(
    open_saga_store: OpenSagaStore,
) -> None:
    log: list[str] = []
    saga_id = await killed_in_b(open_saga_store, log)
    changed = Saga("order", [step(log, n) for n in ("a", "b2", "c")], context=Order)
    store = await open_saga_store()
    assert await Orchestrator(store, [changed]).recover() == []
    record = await store.get(saga_id)
    assert record.waiting is not None
    assert record.waiting.startswith("order v1 changed shape since this instance")
    assert log == ["a", "b"]


async def test_a_new_optional_context_field_keeps_the_fingerprint(
    open_saga_store: OpenSagaStore,
) -> None:
    class Wider(Order):
        note: str | None = None

    log: list[str] = []
    saga_id = await killed_in_b(open_saga_store, log)
    wider = Saga(
        "order", [step(log, n) for n in ("a", "b", "c")], context=Wider, version=1
    )
    assert wider.fingerprint == v1([]).fingerprint
    orch = Orchestrator(await open_saga_store(), [wider])
    assert await orch.recover() == [saga_id]
    result = await asyncio.wait_for(orch.wait(saga_id), 5)
    assert result.status is SagaStatus.SUCCEEDED
    assert log == ["a", "b", "b", "c"]


def v2_migrating(log: list[str], *, auto: bool) -> Saga[Order]:
    names = ["x", "a", "b2", "c"]
    migration = Migration(
        steps={"b": "b2"}, context=lambda c: {**c, "amount": 5}, auto=auto
    )
    return Saga(
        "order",
        [step(log, n) for n in names],
        context=Order,
        version=2,
        migrate_from={1: migration},
    )


async def test_an_operator_migration_moves_the_instance_to_v2(
    open_saga_store: OpenSagaStore,
) -> None:
    log: list[str] = []
    saga_id = await killed_in_b(open_saga_store, log)
    store = await open_saga_store()
    v2 = v2_migrating(log, auto=False)
    orch = Orchestrator(store, [v2])
    assert await orch.recover() == []
    waiting = (await store.get(saga_id)).waiting
    assert waiting is not None
    assert waiting.endswith("a migration is declared: sagakit migrate-instances")

    registry = Registry([v2])
    record = await store.get(saga_id)
    assert migratable(registry, record, auto_only=False)
    assert not migratable(registry, record, auto_only=True)
    await migrate_instance(
        store, registry, record, clock=SystemClock(), by="ops", reason="v2 ships"
    )
    moved = await store.get(saga_id)
    assert (moved.definition_version, moved.fingerprint) == (2, v2.fingerprint)
    assert moved.context == {"amount": 5}
    assert moved.waiting is None
    (line,) = [h for h in await store.history(saga_id) if h.outcome == "migrated"]
    assert line.result == {
        "from": 1,
        "to": 2,
        "by": "ops",
        "reason": "v2 ships",
        "renamed": {"b": "b2"},
    }

    assert await orch.recover() == [saga_id]
    result = await asyncio.wait_for(orch.wait(saga_id), 5)
    assert result.status is SagaStatus.SUCCEEDED
    # b was in flight: b2 takes it over; x, inserted before, does not run
    assert log == ["a", "b", "b2", "c"]


@pytest.mark.parametrize("lease", [None, 30.0])
async def test_an_auto_migration_is_applied_on_recover(
    open_saga_store: OpenSagaStore, lease: float | None
) -> None:
    log: list[str] = []
    saga_id = await killed_in_b(open_saga_store, log)
    orch = Orchestrator(
        await open_saga_store(), [v2_migrating(log, auto=True)], lease=lease
    )
    assert await orch.recover() == [saga_id]
    result = await asyncio.wait_for(orch.wait(saga_id), 5)
    assert result.status is SagaStatus.SUCCEEDED
    assert log == ["a", "b", "b2", "c"]


async def test_a_worker_without_the_version_does_not_spin_on_it(
    open_saga_store: OpenSagaStore,
) -> None:
    log: list[str] = []
    saga_id = await killed_in_b(open_saga_store, log)
    store = await open_saga_store()
    worker = Worker(store, [v2(log)], lease=30.0, poll_interval=0.01)
    await asyncio.wait_for(worker.run(until_idle=True), 5)
    assert worker.claimed == 0
    record = await store.get(saga_id)
    assert record.waiting == "needs order v1, not registered here (have v2)"
    assert record.version == 2  # created at 1, then a's commit: never claimed
    assert log == ["a", "b"]


async def test_the_dashboard_shows_why_an_instance_waits(tmp_path: Path) -> None:
    log: list[str] = []
    path = tmp_path / "dash.db"

    async def sqlite() -> SagaStore:
        return SQLiteStore(path)

    saga_id = await killed_in_b(sqlite, log)
    store = SQLiteStore(path)
    await Orchestrator(store, [v2(log)]).recover()
    app = create_app(store, [v2(log)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        listing = await client.get("/")
        page = await client.get(f"/sagas/{saga_id}")
        api = await client.get(f"/api/sagas/{saga_id}")
    assert "waiting" in listing.text
    assert page.status_code == 200
    assert "needs order v1, not registered here (have v2)" in page.text
    assert "order v1" in page.text
    body = api.json()
    assert body["waiting"] == "needs order v1, not registered here (have v2)"
    assert body["definition_version"] == 1
    await store.close()
