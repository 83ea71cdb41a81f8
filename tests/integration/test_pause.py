"""Pausing and unpausing saga instances on a real store (SQLite, PostgreSQL).

Requests come through the orchestrator that drives the saga, or from
elsewhere: through ``sagakit.admin``, as the CLI and the dashboard make them
(then the orchestrator keeps the saga, and records the outcome of its step
in flight). Real processes: ``tests/e2e/test_pause_processes.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sagakit import Orchestrator, RetryPolicy, Saga, SagaStatus, Step, admin
from sagakit.adapters.store import open_store_async
from sagakit.definition import Parallel
from sagakit.engine import (
    CancelRequested,
    SagaStarted,
    StepStatus,
    StepSucceeded,
    decide,
    initial_state,
)
from sagakit.ports.store import SagaRecord, SagaStore
from sagakit.runtime import adoption, owners

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


SAID = {"by": "ops", "reason": "test"}


async def operator_lines(store: SagaStore, saga_id: str) -> list[tuple[str, Any]]:
    return [
        (h.outcome, h.result)
        for h in await store.history(saga_id)
        if h.outcome.endswith("pause_requested")
    ]


def three_steps(log: list[str], two: Gate) -> Saga[Any]:
    """``one``, ``two`` (gated), ``three``; each logs its name."""
    return Saga(
        "three",
        [
            Step("one", lambda ctx: log.append("one")),
            Step("two", two),
            Step("three", lambda ctx: log.append("three")),
        ],
    )


def rolling_back(log: list[str], undo_two: Gate) -> Saga[Any]:
    """``three`` fails for good: ``two`` is undone (gated), then ``one``."""

    def fail(ctx: object) -> None:
        raise OSError("down")

    return Saga(
        "rollback",
        [
            Step(
                "one", lambda ctx: None, compensate=lambda ctx: log.append("undo one")
            ),
            Step("two", lambda ctx: None, compensate=undo_two),
            Step("three", fail, retry=RetryPolicy(attempts=1)),
        ],
    )


async def outcomes(store: SagaStore, saga_id: str) -> list[tuple[str, str, str]]:
    """(kind, step, outcome) of every step and compensation line."""
    return [
        (h.kind, h.step or "", h.outcome)
        for h in await store.history(saga_id)
        if h.kind != "saga"
    ]


@dataclass
class Operator:
    """Pauses and unpauses ``orch``'s sagas through it, or from ``elsewhere``
    (``sagakit.admin``): then ``orch`` keeps its lease on the saga."""

    orch: Orchestrator
    definition: Saga[Any]
    elsewhere: bool

    async def pause(self, saga_id: str, **said: str) -> None:
        if not self.elsewhere:
            await self.orch.pause(saga_id, **said)
            return
        await admin.pause(self.orch.store, [self.definition], saga_id, **said)
        lease = (await self.orch.store.leases([saga_id]))[saga_id]
        assert (lease.owner, lease.live) == (self.orch.worker_id, True)

    async def unpause(self, saga_id: str, **said: str) -> None:
        if self.elsewhere:
            await admin.unpause(self.orch.store, [self.definition], saga_id, **said)
        else:
            await self.orch.unpause(saga_id, **said)


@pytest.fixture(params=[False, True], ids=["by-its-driver", "from-elsewhere"])
def elsewhere(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_a_paused_saga_finishes_its_step_then_waits(
    store: SagaStore, elsewhere: bool
) -> None:
    log: list[str] = []
    two = Gate(log, "two")
    definition = three_steps(log, two)
    orch = Orchestrator(store, [definition])
    operator = Operator(orch, definition, elsewhere)
    saga_id = await orch.start(definition)
    await asyncio.wait_for(two.started.wait(), 10)
    await operator.pause(saga_id, by="alice", reason="maintenance")
    two.open.set()
    await recorded(store, saga_id, "two", "action")
    await asyncio.sleep(QUIET)
    assert log == ["one", "two"]
    record = await store.get(saga_id)
    assert record.status is SagaStatus.RUNNING
    assert record.state.paused
    assert record.state.step("two").result == "two"
    assert record.state.held == ("three",)
    assert orch.paused == 1  # parked where it is driven
    await operator.unpause(saga_id, by="alice", reason="done")
    final = await asyncio.wait_for(orch.wait(saga_id), 10)
    assert final.status is SagaStatus.SUCCEEDED
    assert log == ["one", "two", "three"]
    assert await outcomes(store, saga_id) == [
        ("action", "one", "succeeded"),
        ("action", "two", "succeeded"),
        ("action", "three", "succeeded"),
    ]
    assert await operator_lines(store, saga_id) == [
        (
            "pause_requested",
            {"by": "alice", "reason": "maintenance", "changed": ["paused"]},
        ),
        (
            "unpause_requested",
            {"by": "alice", "reason": "done", "changed": ["unpaused"]},
        ),
    ]


async def test_a_paused_rollback_finishes_its_compensation_then_waits(
    store: SagaStore, elsewhere: bool
) -> None:
    log: list[str] = []
    undo_two = Gate(log, "undo two")
    definition = rolling_back(log, undo_two)
    orch = Orchestrator(store, [definition])
    operator = Operator(orch, definition, elsewhere)
    saga_id = await orch.start(definition)
    await asyncio.wait_for(undo_two.started.wait(), 10)
    await operator.pause(saga_id, by="alice", reason="look first")
    undo_two.open.set()
    await recorded(store, saga_id, "two", "compensation")
    await asyncio.sleep(QUIET)
    assert log == ["undo two"]
    record = await store.get(saga_id)
    assert record.status is SagaStatus.COMPENSATING
    assert record.state.paused
    assert record.state.held == ("one",)
    await operator.unpause(saga_id, by="alice", reason="done")
    final = await asyncio.wait_for(orch.wait(saga_id), 10)
    assert final.status is SagaStatus.COMPENSATED
    assert log == ["undo two", "undo one"]
    compensations = [o for o in await outcomes(store, saga_id) if o[0] != "action"]
    assert compensations == [
        ("compensation", "two", "succeeded"),
        ("compensation", "one", "succeeded"),
    ]


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
    again = await admin.pause_all(
        store, sagas, "paused", version=1, by="bob", reason="deploy"
    )
    assert again.done == []  # paused already: nothing to do
    v2 = await admin.pause_all(
        store, sagas, "paused", version=2, by="bob", reason="deploy"
    )
    assert v2.done == []

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

    result = await admin.unpause_all(
        store, sagas, "paused", by="bob", reason="deployed"
    )
    assert sorted(result.done) == sorted(ids)
    finisher = Orchestrator(store, sagas)
    await finisher.recover()
    for saga_id in ids:
        final = await asyncio.wait_for(finisher.wait(saga_id), 10)
        assert final.status is SagaStatus.SUCCEEDED
    assert log == ["b", "a", "a", "a"]
    assert await operator_lines(store, ids[0]) == [
        ("pause_requested", {"by": "bob", "reason": "deploy", "changed": ["paused"]}),
        (
            "unpause_requested",
            {"by": "bob", "reason": "deployed", "changed": ["unpaused"]},
        ),
    ]


async def test_pause_requests_that_do_not_fit_are_refused(store: SagaStore) -> None:
    from sagakit.errors import SagaError, StateError  # noqa: PLC0415

    definition: Saga[Any] = Saga("done", [Step("a", lambda ctx: None)])
    orch = Orchestrator(store, [definition])
    result = await orch.run(definition)
    before = await store.get(result.saga_id)
    with pytest.raises(StateError, match="only a running or compensating"):
        await admin.pause(store, [definition], result.saga_id, **SAID)
    with pytest.raises(StateError, match="not paused"):
        await admin.unpause(store, [definition], result.saga_id, **SAID)
    with pytest.raises(SagaError, match="no definition of saga 'nope'"):
        await admin.pause_all(store, [definition], "nope", **SAID)
    assert (await store.get(result.saga_id)).version == before.version


# -- from elsewhere: the driver keeps the saga ---------------------------------


class FailsFirst(Gate):
    """A gated step whose first attempt fails (retryable)."""

    async def __call__(self, ctx: object) -> str:
        result = await super().__call__(ctx)
        if self.log.count(self.name) == 1:
            raise OSError("first attempt")
        return result


async def test_an_unpause_from_elsewhere_issues_work_the_owner_then_runs(
    store: SagaStore,
) -> None:
    """a fails while paused and its retry is held; b still runs when another
    process unpauses, which issues the retry: the owner runs it once b's
    outcome is recorded (it learns of it when that commit is refused)."""
    log: list[str] = []
    a, b = FailsFirst(log, "a"), Gate(log, "b")
    definition: Saga[Any] = Saga(
        "parallel",
        [
            Parallel(
                Step("a", a, retry=RetryPolicy(attempts=2, backoff=0, jitter=0)),
                Step("b", b),
            ),
            Step("c", lambda ctx: log.append("c")),
        ],
    )
    owner = Orchestrator(store, [definition])
    saga_id = await owner.start(definition)
    await asyncio.wait_for(asyncio.gather(a.started.wait(), b.started.wait()), 10)
    await admin.pause(store, [definition], saga_id, **SAID)
    a.open.set()
    await recorded(store, saga_id, "a", "action")
    await asyncio.sleep(QUIET)
    assert (await store.get(saga_id)).state.held == ("a",)
    assert log.count("a") == 1
    await admin.unpause(store, [definition], saga_id, **SAID)
    b.open.set()
    final = await asyncio.wait_for(owner.wait(saga_id), 10)
    assert final.status is SagaStatus.SUCCEEDED
    assert sorted(log) == ["a", "a", "b", "c"]
    assert await outcomes(store, saga_id) == [
        ("action", "a", "failed"),
        ("action", "b", "succeeded"),
        ("action", "a", "succeeded"),
        ("action", "c", "succeeded"),
    ]


def test_a_live_owner_elsewhere_drives_its_sagas_a_dead_one_does_not() -> None:
    me = owners.default_worker_id()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        there = f"{owners.HOST}:{other.pid}:abc"
        assert owners.drives(there, "s1", me=me)
        assert owners.drives("elsewhere:1:abc", "s1", me=me)  # its lease says
        assert not owners.drives(me, "s1", me=me)
    finally:
        other.kill()
        other.wait(10)
    assert not owners.drives(there, "s1", me=me)


async def test_an_adoption_reloads_a_pause_committed_since_its_claim(
    store: SagaStore,
) -> None:
    """A process (elsewhere, alive) claimed a cancelled saga whose step three
    was in flight when its last owner died; a pause lands before it commits
    the adoption: it reloads, and holds the compensation it would start."""
    log: list[str] = []
    undo_two = Gate(log, "undo two")
    undo_two.open.set()
    definition = rolling_back(log, undo_two)
    decision = decide(definition, initial_state(definition, "s1"), SagaStarted(0))
    for event in (
        StepSucceeded("one", None, 1),
        StepSucceeded("two", None, 2),
        CancelRequested(3),  # three runs on: the rollback waits for it
    ):
        decision = decide(definition, decision.state, event)
    state = decision.state
    record = SagaRecord(
        saga_id="s1",
        saga_name=definition.name,
        status=state.status,
        version=1,
        state=state,
        context={},
        idempotency_key=None,
        created_at=0,
        updated_at=3,
        definition_version=definition.version,
        fingerprint=definition.fingerprint,
    )
    # another host: alive while its lease is (new: no driver here had its id)
    owner = f"elsewhere:1:{uuid.uuid4().hex}"
    await store.create(record, [], owner=owner, lease=60)
    await admin.pause(store, [definition], "s1", **SAID)
    adopter = Orchestrator(store, [definition], worker_id=owner)
    assert await adoption.adopt(adopter.driver, record, "claimed")  # stale copy
    await asyncio.wait_for(adopter.settle(), 10)
    paused = await store.get("s1")
    assert paused.state.paused
    assert paused.state.held == ("two",)
    assert paused.state.step("three").status is StepStatus.FAILED  # interrupted
    assert log == []
    await admin.unpause(store, [definition], "s1", **SAID)
    final = await asyncio.wait_for(adopter.wait("s1"), 10)
    assert final.status is SagaStatus.COMPENSATED
    assert log == ["undo two", "undo one"]
    await adopter.stop_driving()
