"""check_saga: passes on correct sagas, and catches broken behaviour."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import sagakit.runtime.driver as driver_module
from sagakit import Parallel, RetryPolicy, Saga, SagaStatus, SQLiteStore, Step
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.definition import Remote
from sagakit.engine import progress, rollback
from sagakit.engine.commands import Compensate, RunStep
from sagakit.engine.decide import Decision
from sagakit.engine.state import SagaState, StepStatus
from sagakit.participant import Participant
from sagakit.ports.store import SagaStore
from sagakit.ports.transport import Transport
from sagakit.runtime.executor import execute
from sagakit.testing import CheckReport, check_saga, check_saga_sync

engine = importlib.import_module("sagakit.engine.decide")  # the module, not decide()


class Ctx(BaseModel):
    n: int = 1


def ok(ctx: Ctx) -> int:
    return ctx.n


async def undo(ctx: Ctx, result: int) -> None:
    return None


def sequential() -> Saga[Ctx]:
    return Saga(
        "seq",
        [Step("a", ok, compensate=undo), Step("b", ok, compensate=undo), Step("c", ok)],
        context=Ctx,
    )


def rules(report: CheckReport) -> set[str]:
    return {v.rule for v in report.violations}


async def test_sequential_saga_passes() -> None:
    report = await check_saga(sequential(), Ctx)
    report.assert_ok()
    print(report.summary())
    assert report.outcomes["compensation_failed"] == 2
    assert any(p.crash is not None for p in report.points)


async def test_parallel_pivot_retries_and_compensate_on_failure() -> None:
    saga = Saga(
        "rich",
        [
            Step("reserve", ok, compensate=undo, compensate_on_failure=True),
            Parallel(
                Step("flight", ok, compensate=undo),
                Step("hotel", ok, compensate=undo, retry=RetryPolicy(attempts=3)),
            ),
            Step("charge", ok, pivot=True),
            Step("notify", ok, retry=RetryPolicy(attempts=5, backoff=10)),
        ],
        context=Ctx,
    )
    report = await check_saga(saga, Ctx(n=3))
    report.assert_ok()
    print(report.summary())
    assert {"succeeded", "compensated", "failed", "compensation_failed"} <= set(
        report.outcomes
    )


def test_sync_twin_on_sqlite(tmp_path: Path) -> None:
    made: list[int] = []

    def store() -> SagaStore:
        made.append(1)
        return SQLiteStore(tmp_path / f"check-{len(made)}.db")

    report = check_saga_sync(sequential(), {"n": 2}, store_factory=store, max_points=12)
    report.assert_ok()
    assert len(report.results) == 12
    assert report.skipped > 0


def remote_saga() -> Saga[Ctx]:
    return Saga(
        "remote",
        [
            Step("local", ok, compensate=undo),
            Step(
                "ticket",
                Remote("kitchen.create", lambda ctx: {"n": ctx.n}),
                compensate=Remote("kitchen.cancel", lambda ctx: {"n": ctx.n}),
                retry=RetryPolicy(attempts=2),
            ),
            Step("charge", Remote("accounting.charge"), pivot=True),
        ],
        context=Ctx,
    )


async def test_remote_saga_with_stub_participants(
    sagakit_check: Callable[..., Awaitable[CheckReport]],
) -> None:
    report = await sagakit_check(remote_saga(), Ctx)  # the pytest plugin's
    print(report.summary())


# -- broken behaviour is caught --------------------------------------------------


async def test_catches_compensations_in_completion_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forward_order(saga: Saga[Any], state: SagaState, at: float) -> Decision:
        if any(s.status.value == "running" for s in state.steps.values()):
            return Decision(state, ())
        queue = tuple(n for n in state.completed if saga.step(n).compensate)
        state = replace(state, compensations=queue)
        if not queue:
            return rollback.advance(saga, state, at)
        head = queue[0]  # the first completed: undone before what came after it
        state = state.with_step(head, status=StepStatus.COMPENSATING)
        return Decision(state, (Compensate(head, 1),))

    # the failure is settled where a step fails for good, and after a crash
    for module in (progress, engine):
        monkeypatch.setattr(module, "settle_failure", forward_order)
    report = await check_saga(sequential(), Ctx)
    assert "compensation order" in rules(report)
    with pytest.raises(
        AssertionError, match=r"a compensation started before b's ended"
    ):
        report.assert_ok()


async def test_catches_committed_steps_rerun_after_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def restart(saga: Saga[Any], state: SagaState, at: float) -> Decision:
        decision: Decision = progress._start(saga, state, list(saga.graph.roots), at)
        return decision  # forgets what committed

    monkeypatch.setattr(engine, "_on_resumed", restart)
    report = await check_saga(sequential(), Ctx, run_timeout=2.0)
    assert "no re-run after a crash" in rules(report)
    assert all(v.point.endswith(tuple("0123456789")) for v in report.violations)


async def test_catches_a_step_applied_twice(monkeypatch: pytest.MonkeyPatch) -> None:

    async def twice(saga: Any, state: Any, ctx: Any, command: Any, **kw: Any) -> Any:
        if isinstance(command, RunStep) and command.step == "b":
            await execute(saga, state, ctx, command, **kw)
        return await execute(saga, state, ctx, command, **kw)

    monkeypatch.setattr(driver_module, "execute", twice)
    report = await check_saga(sequential(), Ctx, max_points=3)
    assert "applied once" in rules(report)
    assert "b action applied 2 times" in report.summary()


class ForgetfulInbox(InMemoryStore):
    """An inbox that never remembers: duplicates run the handler again."""

    async def inbox_reply(self, consumer: str, message_id: str) -> bytes | None:
        return None

    async def record_inbox(
        self, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        return True


async def test_catches_a_participant_that_handles_a_command_twice() -> None:
    def participants(transport: Transport, store: SagaStore) -> Iterable[Participant]:
        kitchen = Participant("kitchen", transport, ForgetfulInbox())

        @kitchen.handler("kitchen.create")
        def create(cmd: dict[str, int]) -> dict[str, int]:
            return cmd

        @kitchen.handler("kitchen.cancel")
        def cancel(cmd: dict[str, int]) -> None:
            return None

        return [kitchen]

    report = await check_saga(
        remote_saga(), Ctx, participants=participants, max_points=4
    )
    assert "participant inbox" in rules(report)
    assert "handled 2 times" in report.summary()


def fire_and_forget_saga() -> Saga[Ctx]:
    """Two branches whose undo is a command nobody waits for, joined by a
    local step, then a remote pivot."""
    return Saga(
        "fire_and_forget",
        [
            Step("local", ok, compensate=undo),
            Step(
                "ticket",
                Remote("kitchen.create", lambda ctx: {"n": ctx.n}),
                compensate=Remote(
                    "kitchen.cancel", lambda ctx: {"n": ctx.n}, awaited=False
                ),
                after=("local",),
            ),
            Step(
                "hold",
                Remote("bank.hold"),
                compensate=Remote("bank.release", awaited=False),
                after=("local",),
            ),
            Step(
                "charge",
                Remote("accounting.charge"),
                pivot=True,
                after=("ticket", "hold"),
            ),
        ],
        context=Ctx,
    )


async def test_fire_and_forget_compensations_pass() -> None:
    report = await check_saga(fire_and_forget_saga(), Ctx)
    report.assert_ok()
    print(report.summary())
    # a participant that fails an undo it was not waited for changes nothing
    failing = [
        r
        for r in report.results
        if any(
            i.kind == "compensation" and i.mode == "always" for i in r.point.injections
        )
        and r.point.crash is None
    ]
    assert {r.point.injections[1].step for r in failing} == {"local", "ticket", "hold"}
    for r in failing:
        sent = r.point.injections[1].step != "local"
        assert r.status is (
            SagaStatus.COMPENSATED if sent else SagaStatus.COMPENSATION_FAILED
        )


async def test_catches_a_fire_and_forget_compensation_never_counted_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "sagakit.runtime.unawaited.sent", lambda saga, decision, done, at: decision
    )
    report = await check_saga(
        fire_and_forget_saga(), Ctx, max_points=3, run_timeout=1.0
    )
    assert "terminal status" in rules(report)
    assert "stopped in compensating" in report.summary()
