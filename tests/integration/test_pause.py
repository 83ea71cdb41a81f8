"""Pausing and unpausing saga instances on a real store (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sagakit import Orchestrator, RetryPolicy, Saga, SagaStatus, Step, admin
from sagakit.adapters.store import open_store_async
from sagakit.ports.store import SagaStore

QUIET = 0.3
"""How long nothing may start while a saga is paused."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SagaStore]:
    if request.param == "sqlite":
        url = str(tmp_path / "pause.db")
    else:
        url = request.getfixturevalue("pg_url")
    opened = await open_store_async(url)
    yield opened
    await opened.close()


class Gate:
    """A slow step (or compensation): it starts, then waits to be let go."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name
        self.started, self.open = asyncio.Event(), asyncio.Event()

    async def __call__(self, ctx: object) -> str:
        self.log.append(self.name)
        self.started.set()
        await self.open.wait()
        return self.name


async def recorded(store: SagaStore, saga_id: str, step: str, kind: str) -> None:
    """Wait until the history has the outcome of ``step``."""
    async with asyncio.timeout(10):
        while not any(  # noqa: ASYNC110 - the store is polled, nothing signals
            h.step == step and h.kind == kind and h.outcome != "started"
            for h in await store.history(saga_id)
        ):
            await asyncio.sleep(0.02)


async def operator_lines(store: SagaStore, saga_id: str) -> list[tuple[str, Any]]:
    return [
        (h.outcome, h.result)
        for h in await store.history(saga_id)
        if h.outcome.endswith("pause_requested")
    ]


async def test_a_paused_saga_finishes_its_step_then_waits(store: SagaStore) -> None:
    log: list[str] = []
    two = Gate(log, "two")
    definition: Saga[Any] = Saga(
        "three",
        [
            Step("one", lambda ctx: log.append("one")),
            Step("two", two),
            Step("three", lambda ctx: log.append("three")),
        ],
    )
    orch = Orchestrator(store, [definition])
    saga_id = await orch.start(definition)
    await asyncio.wait_for(two.started.wait(), 10)
    await orch.pause(saga_id, by="alice", reason="maintenance")
    two.open.set()
    await recorded(store, saga_id, "two", "action")
    await asyncio.sleep(QUIET)
    assert log == ["one", "two"]
    record = await store.get(saga_id)
    assert record.status is SagaStatus.RUNNING
    assert record.state.paused
    assert record.state.step("two").result == "two"
    await orch.unpause(saga_id, by="alice")
    final = await asyncio.wait_for(orch.wait(saga_id), 10)
    assert final.status is SagaStatus.SUCCEEDED
    assert log == ["one", "two", "three"]
    assert await operator_lines(store, saga_id) == [
        ("pause_requested", {"by": "alice", "reason": "maintenance"}),
        ("unpause_requested", {"by": "alice"}),
    ]


async def test_a_paused_rollback_finishes_its_compensation_then_waits(
    store: SagaStore,
) -> None:
    log: list[str] = []
    undo_two = Gate(log, "undo two")

    def fail(ctx: object) -> None:
        raise OSError("down")

    definition: Saga[Any] = Saga(
        "rollback",
        [
            Step(
                "one", lambda ctx: None, compensate=lambda ctx: log.append("undo one")
            ),
            Step("two", lambda ctx: None, compensate=undo_two),
            Step("three", fail, retry=RetryPolicy(attempts=1)),
        ],
    )
    orch = Orchestrator(store, [definition])
    saga_id = await orch.start(definition)
    await asyncio.wait_for(undo_two.started.wait(), 10)
    await orch.pause(saga_id)
    undo_two.open.set()
    await recorded(store, saga_id, "two", "compensation")
    await asyncio.sleep(QUIET)
    assert log == ["undo two"]
    record = await store.get(saga_id)
    assert record.status is SagaStatus.COMPENSATING
    assert record.state.paused
    await orch.unpause(saga_id)
    final = await asyncio.wait_for(orch.wait(saga_id), 10)
    assert final.status is SagaStatus.COMPENSATED
    assert log == ["undo two", "undo one"]


async def test_pause_by_saga_name_pauses_all_its_running_instances(
    store: SagaStore,
) -> None:
    log: list[str] = []
    paused: Saga[Any] = Saga("paused", [Step("a", lambda ctx: log.append("a"))])
    other: Saga[Any] = Saga("other", [Step("b", lambda ctx: log.append("b"))])
    sagas = [paused, other]
    producer = Orchestrator(store, sagas)
    ids = [await producer.submit(paused) for _ in range(3)]
    other_id = await producer.submit(other)

    result = await admin.pause_all(store, sagas, "paused", by="bob", reason="deploy")
    assert sorted(result.done) == sorted(ids)
    assert result.refused == {}
    again = await admin.pause_all(store, sagas, "paused", version=1)
    assert again.done == []  # paused already: nothing to do
    assert (await admin.pause_all(store, sagas, "paused", version=2)).done == []

    # a worker adopts them while paused: they stay parked, the other runs
    worker = Orchestrator(store, sagas)
    await worker.recover()
    await asyncio.wait_for(worker.wait(other_id), 10)
    await asyncio.wait_for(worker.settle(), 10)
    await asyncio.sleep(QUIET)
    assert log == ["b"]
    for saga_id in ids:
        record = await store.get(saga_id)
        assert record.status is SagaStatus.RUNNING
        assert record.state.paused
    await worker.stop_driving()

    result = await admin.unpause_all(store, sagas, "paused", by="bob")
    assert sorted(result.done) == sorted(ids)
    finisher = Orchestrator(store, sagas)
    await finisher.recover()
    for saga_id in ids:
        final = await asyncio.wait_for(finisher.wait(saga_id), 10)
        assert final.status is SagaStatus.SUCCEEDED
    assert log == ["b", "a", "a", "a"]
    assert await operator_lines(store, ids[0]) == [
        ("pause_requested", {"by": "bob", "reason": "deploy"}),
        ("unpause_requested", {"by": "bob"}),
    ]


async def test_pause_requests_that_do_not_fit_are_refused(store: SagaStore) -> None:
    from sagakit.errors import SagaError, StateError  # noqa: PLC0415

    definition: Saga[Any] = Saga("done", [Step("a", lambda ctx: None)])
    orch = Orchestrator(store, [definition])
    result = await orch.run(definition)
    before = await store.get(result.saga_id)
    with pytest.raises(StateError, match="only a running or compensating"):
        await admin.pause(store, [definition], result.saga_id)
    with pytest.raises(StateError, match="not paused"):
        await admin.unpause(store, [definition], result.saga_id)
    with pytest.raises(SagaError, match="no definition of saga 'nope'"):
        await admin.pause_all(store, [definition], "nope")
    assert (await store.get(result.saga_id)).version == before.version
