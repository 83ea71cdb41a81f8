"""Operator actions through the orchestrator on a real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sagakit import Orchestrator, RetryPolicy, Saga, SagaStatus, SQLiteStore, Step
from sagakit.errors import StateError


class Switch:
    def __init__(self) -> None:
        self.broken = True
        self.log: list[str] = []

    def step(self, name: str):  # type: ignore[no-untyped-def]
        def action(ctx: object) -> str:
            self.log.append(name)
            if name == "ship" and self.broken:
                raise OSError("carrier down")
            return name

        return action

    def undo(self, name: str):  # type: ignore[no-untyped-def]
        def compensate(ctx: object) -> None:
            self.log.append(f"undo {name}")
            if name == "reserve" and self.broken:
                raise OSError("stock service down")

        return compensate


def saga(switch: Switch) -> Saga[object]:  # type: ignore[type-var]
    return Saga(
        "order",
        [
            Step(
                "reserve",
                switch.step("reserve"),
                compensate=switch.undo("reserve"),
                compensation_retry=RetryPolicy(attempts=1),
            ),
            Step("charge", switch.step("charge"), pivot=True),
            Step("ship", switch.step("ship")),
        ],
    )


async def test_retry_finishes_a_failed_saga_after_the_fix(tmp_path: Path) -> None:
    switch = Switch()
    definition = saga(switch)
    orch = Orchestrator(SQLiteStore(tmp_path / "s.db"), [definition])
    result = await orch.run(definition)
    assert result.status is SagaStatus.FAILED
    switch.broken = False
    await orch.retry(result.saga_id)
    final = await asyncio.wait_for(orch.wait(result.saga_id), 5)
    assert final.status is SagaStatus.SUCCEEDED
    assert switch.log == ["reserve", "charge", "ship", "ship"]
    outcomes = [h.outcome for h in await orch.store.history(result.saga_id)]
    assert "retry_requested" in outcomes


async def test_resume_finishes_a_failed_rollback(tmp_path: Path) -> None:
    switch = Switch()
    definition = Saga(
        "order",
        [
            Step(
                "reserve",
                switch.step("reserve"),
                compensate=switch.undo("reserve"),
                compensation_retry=RetryPolicy(attempts=1),
            ),
            Step("ship", switch.step("ship")),
        ],
    )
    orch = Orchestrator(SQLiteStore(tmp_path / "s.db"), [definition])
    result = await orch.run(definition)
    assert result.status is SagaStatus.COMPENSATION_FAILED
    switch.broken = False
    await orch.resume(result.saga_id, by="alice")
    final = await asyncio.wait_for(orch.wait(result.saga_id), 5)
    assert final.status is SagaStatus.COMPENSATED
    assert switch.log == ["reserve", "ship", "undo reserve", "undo reserve"]
    history = await orch.store.history(result.saga_id)
    requested = [h for h in history if h.outcome == "resume_requested"]
    assert requested[0].result == {
        "by": "alice",
        "changed": [
            "status compensation_failed -> compensating",
            "step reserve compensation_failed -> compensating",
        ],
    }


async def test_cancel_a_running_saga_compensates_it(tmp_path: Path) -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    log: list[str] = []

    async def slow(ctx: object) -> None:
        log.append("slow started")
        started.set()
        await gate.wait()
        log.append("slow done")

    def undo(ctx: object) -> None:
        log.append("undo first")

    definition = Saga(
        "order",
        [
            Step("first", lambda ctx: log.append("first"), compensate=undo),
            Step("slow", slow),
            Step("never", lambda ctx: log.append("never")),
        ],
    )
    orch = Orchestrator(SQLiteStore(tmp_path / "s.db"), [definition])
    saga_id = await orch.start(definition)
    await asyncio.wait_for(started.wait(), 5)
    await orch.cancel(saga_id, reason="customer asked")
    gate.set()
    final = await asyncio.wait_for(orch.wait(saga_id), 5)
    assert final.status is SagaStatus.COMPENSATED
    assert final.error is not None
    assert final.error.message == "customer asked"
    assert log == ["first", "slow started", "slow done", "undo first"]


async def test_actions_that_do_not_fit_are_refused_and_change_nothing(
    tmp_path: Path,
) -> None:
    definition = Saga("ok", [Step("a", lambda ctx: 1)])
    orch = Orchestrator(SQLiteStore(tmp_path / "s.db"), [definition])
    result = await orch.run(definition)
    before = await orch.store.get(result.saga_id)
    for action in (orch.retry, orch.resume, orch.cancel):
        with pytest.raises(StateError, match="succeeded"):
            await action(result.saga_id)
    assert (await orch.store.get(result.saga_id)).version == before.version


async def test_an_action_on_another_process_saga_is_picked_up_by_recover(
    tmp_path: Path,
) -> None:
    switch = Switch()
    definition = saga(switch)
    first = Orchestrator(SQLiteStore(tmp_path / "s.db"), [definition])
    result = await first.run(definition)
    switch.broken = False
    # an operator process commits the request and hands it over
    from sagakit.runtime import operator  # noqa: PLC0415

    admin = Orchestrator(SQLiteStore(tmp_path / "s.db"), [definition])
    await operator.request(admin, result.saga_id, "retry", hand_over=True)
    assert (await admin.store.get(result.saga_id)).status is SagaStatus.RUNNING
    worker = Orchestrator(SQLiteStore(tmp_path / "s.db"), [definition])
    assert await worker.recover() == [result.saga_id]
    final = await asyncio.wait_for(worker.wait(result.saga_id), 5)
    assert final.status is SagaStatus.SUCCEEDED
