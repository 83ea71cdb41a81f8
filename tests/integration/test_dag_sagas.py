"""DAG sagas, fail-fast groups and rollback policies through the real
Orchestrator, on SQLite and PostgreSQL, and through check_saga."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import (
    CompensationFailed,
    Orchestrator,
    Parallel,
    RetryPolicy,
    Saga,
    SagaStatus,
    SQLiteStore,
    Step,
)
from sagakit.adapters.store.postgres import PostgresStore
from sagakit.ports.store import SagaStore
from sagakit.testing import FakeClock, check_saga


class Ctx(BaseModel):
    n: int = 1


class Declined(Exception):
    pass


class Broken(Exception):
    pass


NO_RETRY_UNDO = RetryPolicy(attempts=1)


def act(log: list[str], name: str) -> Callable[[Ctx], Any]:
    async def action(ctx: Ctx) -> str:
        log.append(name)
        return name

    return action


def undo(log: list[str], name: str) -> Callable[[Ctx], Any]:
    async def compensate(ctx: Ctx) -> None:
        log.append(f"undo {name}")

    return compensate


def fails(log: list[str], name: str, exc: Exception) -> Callable[[Ctx], Any]:
    async def action(ctx: Ctx) -> None:
        log.append(name)
        raise exc

    return action


def shipping(log: list[str], *, ship_fails: bool, undo_pay_fails: bool) -> Saga[Ctx]:
    """reserve -> (pack | pay) -> ship, as a DAG; notify hangs off reserve."""
    pay_undo = fails(log, "undo pay", Broken("refund API down"))
    return Saga(
        "shipping",
        [
            Step("reserve", act(log, "reserve"), undo(log, "reserve")),
            Step(
                "pack",
                act(log, "pack"),
                undo(log, "pack"),
                compensation_retry=NO_RETRY_UNDO,
                after=("reserve",),
            ),
            Step(
                "pay",
                act(log, "pay"),
                pay_undo if undo_pay_fails else undo(log, "pay"),
                compensation_retry=NO_RETRY_UNDO,
                after=("reserve",),
            ),
            Step(
                "ship",
                fails(log, "ship", Declined("no courier"))
                if ship_fails
                else act(log, "ship"),
                after=("pack", "pay"),
            ),
        ],
        context=Ctx,
        on_compensation_failure="continue",
    )


@pytest.fixture
def sqlite_store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "sagas.db")


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.connect(pg_url, migrate=False)
    yield store
    await store.close()


async def _dag_failing_branch(store: SagaStore) -> None:
    log: list[str] = []
    orch = Orchestrator(store, clock=FakeClock(), jitter=lambda: 0.0)
    result = await orch.run(shipping(log, ship_fails=True, undo_pay_fails=False))
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "ship"
    assert log[0] == "reserve"
    assert sorted(log[1:3]) == ["pack", "pay"]
    assert log[3] == "ship"
    # pack and pay are undone (concurrently) before reserve
    assert sorted(log[4:6]) == ["undo pack", "undo pay"]
    assert log[6:] == ["undo reserve"]
    stored = await store.get(result.saga_id)
    assert {n: s.status.value for n, s in stored.state.steps.items()} == {
        "reserve": "compensated",
        "pack": "compensated",
        "pay": "compensated",
        "ship": "failed",
    }


async def _continue_policy(store: SagaStore) -> None:
    log: list[str] = []
    orch = Orchestrator(store, clock=FakeClock(), jitter=lambda: 0.0)
    result = await orch.run(shipping(log, ship_fails=True, undo_pay_fails=True))
    assert result.status is SagaStatus.COMPENSATION_FAILED
    # the refund failed, yet reserve was still undone
    assert "undo pack" in log
    assert log[-1] == "undo reserve"
    assert [step for step, _ in result.compensation_errors] == ["pay"]
    assert result.compensation_step == "pay"
    with pytest.raises(CompensationFailed) as raised:
        result.raise_for_status()
    assert raised.value.compensation_errors == result.compensation_errors
    assert "refund API down" in str(raised.value)
    assert "no courier" in str(raised.value)
    stored = await store.get(result.saga_id)
    assert stored.state.compensations == ("pay",)
    assert stored.state.step("reserve").status.value == "compensated"


async def test_dag_with_a_failing_branch_on_sqlite(sqlite_store: SQLiteStore) -> None:
    await _dag_failing_branch(sqlite_store)


async def test_continue_policy_on_sqlite(sqlite_store: SQLiteStore) -> None:
    await _continue_policy(sqlite_store)


@pytest.mark.postgres
async def test_dag_with_a_failing_branch_on_postgres(pg_store: PostgresStore) -> None:
    await _dag_failing_branch(pg_store)


@pytest.mark.postgres
async def test_continue_policy_on_postgres(pg_store: PostgresStore) -> None:
    await _continue_policy(pg_store)


async def test_continue_policy_then_resume_retries_only_what_failed(
    sqlite_store: SQLiteStore,
) -> None:
    log: list[str] = []
    refund_down = True

    async def refund(ctx: Ctx) -> None:
        log.append("undo pay")
        if refund_down:
            raise Broken("refund API down")

    saga = shipping(log, ship_fails=True, undo_pay_fails=False)
    steps = [
        Step(
            s.name,
            s.action,
            refund if s.name == "pay" else s.compensate,
            compensation_retry=NO_RETRY_UNDO,
            after=s.after,
        )
        for s in saga
    ]
    saga = Saga("shipping", steps, context=Ctx, on_compensation_failure="continue")
    orch = Orchestrator(sqlite_store, clock=FakeClock(), jitter=lambda: 0.0)
    result = await orch.run(saga)
    assert result.status is SagaStatus.COMPENSATION_FAILED
    log.clear()
    refund_down = False
    await orch.resume(result.saga_id)
    ended = await orch.wait(result.saga_id)
    assert ended.status is SagaStatus.COMPENSATED
    assert log == ["undo pay"]  # the others had succeeded: not run again


async def test_fail_fast_cancels_a_running_async_sibling(
    sqlite_store: SQLiteStore,
) -> None:
    log: list[str] = []
    started = asyncio.Event()

    async def slow(ctx: Ctx) -> str:
        started.set()
        try:
            await asyncio.Event().wait()  # would never end on its own
        except asyncio.CancelledError:
            log.append("slow cancelled")
            raise
        return "never"

    async def declined(ctx: Ctx) -> None:
        await started.wait()
        raise Declined("card declined")

    saga = Saga(
        "fast",
        [
            Step("reserve", act(log, "reserve"), undo(log, "reserve")),
            Parallel(
                Step("slow", slow, undo(log, "slow")),
                Step("charge", declined),
                on_failure="fail_fast",
            ),
        ],
        context=Ctx,
    )
    orch = Orchestrator(sqlite_store, jitter=lambda: 0.0)
    result = await asyncio.wait_for(orch.run(saga), 30)
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "charge"
    # cancelled, so not completed: its compensation does not run
    assert log == ["reserve", "slow cancelled", "undo reserve"]
    stored = await sqlite_store.get(result.saga_id)
    slow_state = stored.state.step("slow")
    assert slow_state.status.value == "failed"
    assert slow_state.error is not None
    assert slow_state.error.type == "Cancelled"
    history = await sqlite_store.history(result.saga_id)
    cancelled = [h for h in history if h.step == "slow" and h.outcome == "failed"]
    assert len(cancelled) == 1


async def test_fail_fast_grace_lets_a_sibling_finish(sqlite_store: SQLiteStore) -> None:
    log: list[str] = []
    release = asyncio.Event()

    async def finishing(ctx: Ctx) -> str:
        await release.wait()
        log.append("finishing done")
        return "done"

    async def declined(ctx: Ctx) -> None:
        release.set()  # the sibling finishes within the grace
        raise Declined("card declined")

    saga = Saga(
        "graceful",
        [
            Parallel(
                Step("finishing", finishing, undo(log, "finishing")),
                Step("charge", declined),
                on_failure="fail_fast",
                grace=600.0,  # not waited for: the sibling ends first
            ),
        ],
        context=Ctx,
    )
    orch = Orchestrator(sqlite_store, jitter=lambda: 0.0)
    result = await asyncio.wait_for(orch.run(saga), 60)
    assert result.status is SagaStatus.COMPENSATED
    assert log == ["finishing done", "undo finishing"]


async def test_pivot_information_in_the_result(sqlite_store: SQLiteStore) -> None:
    log: list[str] = []
    saga = Saga(
        "pivoting",
        [
            Step("reserve", act(log, "reserve"), undo(log, "reserve")),
            Step("charge", act(log, "charge"), pivot=True),
            Step("email", act(log, "email"), after=("charge",)),
            Step("ship", fails(log, "ship", Declined("no courier")), after=("charge",)),
        ],
        context=Ctx,
    )
    orch = Orchestrator(sqlite_store, clock=FakeClock(), jitter=lambda: 0.0)
    result = await orch.run(saga)
    assert result.status is SagaStatus.FAILED
    assert result.pivot_reached
    assert result.committed_past_pivot == ("email",)
    again = await orch.result(result.saga_id)
    assert again.pivot_reached
    assert again.committed_past_pivot == ("email",)


def ok(ctx: Ctx) -> int:
    return ctx.n


async def async_ok(ctx: Ctx) -> int:
    await asyncio.sleep(0)
    return ctx.n


def noop(ctx: Ctx) -> None:
    return None


async def test_check_saga_accepts_dags_fail_fast_groups_and_continue() -> None:
    saga = Saga(
        "checked",
        [
            Step("reserve", ok, noop),
            Parallel(
                Step("pack", async_ok, noop, after=("reserve",)),
                Step("pay", async_ok, noop, compensate_on_failure=True),
                on_failure="fail_fast",
            ),
            Step("label", ok, noop, after=("reserve",)),
            Step("charge", ok, pivot=True, after=("pack", "pay", "label")),
            Step("ship", ok, retry=RetryPolicy(attempts=3), after=("charge",)),
        ],
        context=Ctx,
        on_compensation_failure="continue",
    )
    report = await check_saga(saga, Ctx(n=2))
    report.assert_ok()
    assert {r.status for r in report.results} >= {
        SagaStatus.SUCCEEDED,
        SagaStatus.COMPENSATED,
        SagaStatus.COMPENSATION_FAILED,
        SagaStatus.FAILED,
    }
