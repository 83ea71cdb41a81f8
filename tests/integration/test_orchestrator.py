"""The orchestrator on a real SQLite file: commits, retries, timeouts, recovery."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from sagakit import (
    CompensationFailed,
    Orchestrator,
    Parallel,
    RetryPolicy,
    Saga,
    SagaError,
    SagaStatus,
    SQLiteStore,
    Step,
    StepFailed,
)
from sagakit.testing import FakeClock


class Order(BaseModel):
    order_id: str = "o-1"
    amount: int = 10
    log: list[str] = []


class Declined(Exception):
    pass


def recorder(log: list[str], name: str, result: Any = None) -> Callable[[Order], Any]:
    def action(ctx: Order) -> Any:
        log.append(name)
        ctx.log.append(name)
        return result

    return action


def undo(log: list[str], name: str) -> Callable[[Order, Any], None]:
    def compensate(ctx: Order, result: Any) -> None:
        log.append(f"undo {name} {result}")

    return compensate


def fail_with(exc: BaseException, log: list[str] | None = None, name: str = "") -> Any:
    def action(ctx: Order) -> None:
        if log is not None:
            log.append(name)
        raise exc

    return action


@pytest.fixture
def store(sagakit_sqlite_store: SQLiteStore) -> SQLiteStore:
    """sagakit's pytest plugin's: a file in tmp_path, closed after the test."""
    return sagakit_sqlite_store


@pytest.fixture
def clock(sagakit_clock: FakeClock) -> FakeClock:
    return sagakit_clock


@pytest.fixture
def orch(store: SQLiteStore, clock: FakeClock) -> Orchestrator:
    return Orchestrator(store, clock=clock, jitter=lambda: 0.0)


async def test_three_step_success_takes_four_commits(
    orch: Orchestrator, store: SQLiteStore
) -> None:
    log: list[str] = []
    saga = Saga(
        "order",
        [
            Step(
                "reserve",
                recorder(log, "reserve", {"ref": "r1"}),
                compensate=undo(log, "r"),
            ),
            Step("charge", recorder(log, "charge", 42)),
            Step("ship", recorder(log, "ship")),
        ],
        context=Order,
    )
    before = store.commits
    result = await orch.run(saga, Order(order_id="o-7"))
    assert result.status is SagaStatus.SUCCEEDED
    assert store.commits - before == 4
    assert log == ["reserve", "charge", "ship"]
    assert result.results == {"reserve": {"ref": "r1"}, "charge": 42}
    stored = await store.get(result.saga_id)
    assert stored.context == {
        "order_id": "o-7",
        "amount": 10,
        "log": ["reserve", "charge", "ship"],
    }
    outcomes = [
        (h.kind, h.step, h.outcome) for h in await store.history(result.saga_id)
    ]
    assert outcomes == [
        ("saga", None, "started"),
        ("action", "reserve", "succeeded"),
        ("action", "charge", "succeeded"),
        ("action", "ship", "succeeded"),
        ("saga", None, "succeeded"),
    ]


async def test_failure_compensates_in_reverse_with_six_commits(
    orch: Orchestrator, store: SQLiteStore
) -> None:
    log: list[str] = []
    saga = Saga(
        "order",
        [
            Step("a", recorder(log, "a", 1), compensate=undo(log, "a")),
            Step("b", recorder(log, "b", 2), compensate=undo(log, "b")),
            Step("c", fail_with(Declined("card declined")), compensate=undo(log, "c")),
        ],
        context=Order,
    )
    before = store.commits
    result = await orch.run(saga)
    assert result.status is SagaStatus.COMPENSATED
    assert store.commits - before == 6
    assert log == ["a", "b", "undo b 2", "undo a 1"]
    assert result.failed_step == "c"
    assert result.error is not None
    assert result.error.message == "card declined"
    assert result.error.type.endswith("Declined")
    with pytest.raises(StepFailed, match="card declined") as caught:
        result.raise_for_status()
    assert isinstance(caught.value.__cause__, Declined)
    assert caught.value.step == "c"


async def test_parallel_steps_really_run_together(orch: Orchestrator) -> None:
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def a(ctx: Order) -> str:
        a_started.set()
        await asyncio.wait_for(b_started.wait(), 2)
        return "a"

    async def b(ctx: Order) -> str:
        b_started.set()
        await asyncio.wait_for(a_started.wait(), 2)
        return "b"

    saga = Saga("par", [Parallel(Step("a", a), Step("b", b))], context=Order)
    result = await orch.run(saga)
    assert result.status is SagaStatus.SUCCEEDED, result.error
    assert result.results == {"a": "a", "b": "b"}


async def test_parallel_failure_waits_for_sibling_then_compensates_it(
    orch: Orchestrator,
) -> None:
    log: list[str] = []
    sibling_may_finish = asyncio.Event()

    async def slow(ctx: Order) -> str:
        await sibling_may_finish.wait()
        log.append("slow done")
        return "s"

    async def failing(ctx: Order) -> None:
        sibling_may_finish.set()
        raise Declined("no")

    saga = Saga(
        "par",
        [
            Step("first", recorder(log, "first", 0), compensate=undo(log, "first")),
            Parallel(
                Step("slow", slow, compensate=undo(log, "slow")),
                Step("failing", failing, compensate=undo(log, "failing")),
            ),
            Step("never", recorder(log, "never")),
        ],
        context=Order,
    )
    result = await orch.run(saga)
    assert result.status is SagaStatus.COMPENSATED
    assert log == ["first", "slow done", "undo slow s", "undo first 0"]


async def test_retry_uses_backoff_on_the_clock(
    orch: Orchestrator, clock: FakeClock, store: SQLiteStore
) -> None:
    calls: list[int] = []

    def flaky(ctx: Order) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return "ok"

    policy = RetryPolicy(attempts=4, backoff=0.5, multiplier=3.0)
    saga = Saga("retry", [Step("flaky", flaky, retry=policy)], context=Order)
    result = await orch.run(saga)
    assert result.status is SagaStatus.SUCCEEDED
    assert len(calls) == 3
    assert clock.slept == [0.5, 1.5]
    attempts = [
        (h.attempt, h.outcome)
        for h in await store.history(result.saga_id)
        if h.kind == "action"
    ]
    assert attempts == [(1, "failed"), (2, "failed"), (3, "succeeded")]


async def test_errors_outside_retry_on_fail_at_once(orch: Orchestrator) -> None:
    calls: list[str] = []
    policy = RetryPolicy(attempts=5, retry_on=(ConnectionError,))
    saga = Saga(
        "retry", [Step("x", fail_with(Declined("final"), calls, "x"), retry=policy)]
    )
    result = await orch.run(saga)
    assert result.status is SagaStatus.COMPENSATED
    assert calls == ["x"]


async def test_step_timeout_fails_the_step(orch: Orchestrator) -> None:
    async def hangs(ctx: Order) -> None:
        await asyncio.sleep(30)

    saga = Saga("slow", [Step("hangs", hangs, timeout=0.05)], context=Order)
    result = await asyncio.wait_for(orch.run(saga), 5)
    assert result.status is SagaStatus.COMPENSATED
    assert result.error is not None
    assert result.error.type == "TimeoutError"
    assert "timed out after 0.05s" in result.error.message


async def test_failing_compensation_ends_compensation_failed(
    orch: Orchestrator, clock: FakeClock
) -> None:
    log: list[str] = []
    attempts: list[int] = []

    def broken_undo(ctx: Order) -> None:
        attempts.append(1)
        raise OSError("refund service down")

    saga = Saga(
        "order",
        [
            Step("a", recorder(log, "a"), compensate=undo(log, "a")),
            Step(
                "b",
                recorder(log, "b"),
                compensate=broken_undo,
                compensation_retry=RetryPolicy(attempts=3, backoff=1.0),
            ),
            Step("c", fail_with(Declined("declined"))),
        ],
        context=Order,
    )
    result = await orch.run(saga)
    assert result.status is SagaStatus.COMPENSATION_FAILED
    assert len(attempts) == 3
    assert clock.slept == [1.0, 2.0]
    assert "undo a None" not in log  # rollback stops where it failed
    assert result.error is not None
    assert result.error.message == "declined"
    assert result.compensation_step == "b"
    assert result.compensation_error is not None
    assert result.compensation_error.message == "refund service down"
    with pytest.raises(CompensationFailed) as caught:
        result.raise_for_status()
    assert caught.value.compensation_step == "b"
    assert "refund service down" in str(caught.value)


async def test_compensate_on_failure_undoes_the_failed_step_first(
    orch: Orchestrator,
) -> None:
    log: list[str] = []
    saga = Saga(
        "order",
        [
            Step("a", recorder(log, "a", 1), compensate=undo(log, "a")),
            Step(
                "b",
                fail_with(TimeoutError("maybe landed"), log, "b"),
                compensate=undo(log, "b"),
                compensate_on_failure=True,
            ),
        ],
        context=Order,
    )
    result = await orch.run(saga)
    assert result.status is SagaStatus.COMPENSATED
    assert log == ["a", "b", "undo b None", "undo a 1"]


async def test_failure_after_pivot_is_not_compensated(orch: Orchestrator) -> None:
    log: list[str] = []
    saga = Saga(
        "order",
        [
            Step("a", recorder(log, "a"), compensate=undo(log, "a")),
            Step("charge", recorder(log, "charge"), pivot=True),
            Step("email", fail_with(OSError("smtp"), log, "email")),
        ],
        context=Order,
    )
    result = await orch.run(saga)
    assert result.status is SagaStatus.FAILED
    assert log == ["a", "charge", "email"]
    assert result.failed_step == "email"


async def test_idempotency_key_starts_once(
    orch: Orchestrator, store: SQLiteStore
) -> None:
    log: list[str] = []
    saga = Saga("order", [Step("a", recorder(log, "a"))], context=Order)
    first = await orch.run(saga, idempotency_key="order-1")
    second = await orch.run(saga, idempotency_key="order-1")
    started = await orch.start(saga, idempotency_key="order-1")
    assert first.saga_id == second.saga_id == started
    assert log == ["a"]
    assert second.status is SagaStatus.SUCCEEDED
    assert len(await store.list_sagas()) == 1


async def test_an_unknown_start_option_is_refused_before_anything_starts(
    orch: Orchestrator, store: SQLiteStore
) -> None:
    saga = Saga("order", [Step("a", recorder([], "a"))], context=Order)
    for start in (orch.run, orch.start, orch.submit, orch.client.submit):
        with pytest.raises(TypeError, match="idempotncy_key; known: idempotency"):
            await start(saga, idempotncy_key="typo")  # type: ignore[call-arg]
    assert await store.list_sagas() == []


async def test_context_is_validated(orch: Orchestrator) -> None:
    saga = Saga("order", [Step("a", recorder([], "a"))], context=Order)
    ok = await orch.run(saga, {"order_id": "o-9", "amount": 3})
    assert ok.context.order_id == "o-9"
    with pytest.raises(ValidationError):
        await orch.run(saga, {"amount": "lots"})

    class Other(BaseModel):
        x: int = 0

    with pytest.raises(SagaError, match="takes a Order context"):
        await orch.run(saga, Other())  # type: ignore[arg-type]


async def test_non_json_result_fails_the_step_clearly(orch: Orchestrator) -> None:
    saga = Saga("order", [Step("a", lambda ctx: object())], context=Order)
    result = await orch.run(saga)
    assert result.status is SagaStatus.COMPENSATED
    assert result.error is not None
    assert "cannot be stored as JSON" in result.error.message


async def test_start_in_background_then_wait(orch: Orchestrator) -> None:
    gate = asyncio.Event()

    async def gated(ctx: Order) -> str:
        await gate.wait()
        return "done"

    saga = Saga("bg", [Step("gated", gated)], context=Order)
    saga_id = await orch.start(saga)
    current = await orch.result(saga_id)
    assert current.status is SagaStatus.RUNNING
    gate.set()
    final = await asyncio.wait_for(orch.wait(saga_id), 5)
    assert final.status is SagaStatus.SUCCEEDED
    assert final.results == {"gated": "done"}


def test_run_sync_for_synchronous_callers(tmp_path: Path) -> None:
    orch = Orchestrator(SQLiteStore(tmp_path / "sync.db"))
    saga = Saga("sync", [Step("a", lambda ctx: 5)])
    result = orch.run_sync(saga, {"anything": True})
    assert result.status is SagaStatus.SUCCEEDED
    assert result.results == {"a": 5}


async def test_recover_resumes_without_rerunning_committed_steps(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crash.db"
    log: list[str] = []
    stuck = asyncio.Event()
    first_run = {"value": True}

    async def second(ctx: Order) -> str:
        log.append("second")
        if first_run["value"]:
            first_run["value"] = False
            stuck.set()
            await asyncio.sleep(60)  # the "crash" happens here
        return "2"

    saga = Saga(
        "order",
        [
            Step("first", recorder(log, "first", 1)),
            Step("second", second),
            Step("third", recorder(log, "third", 3)),
        ],
        context=Order,
    )
    crashed = Orchestrator(SQLiteStore(path), [saga])
    saga_id = await crashed.start(saga)
    await asyncio.wait_for(stuck.wait(), 5)
    for task in list(crashed.driver.tasks):  # abandon it, as a killed process would
        task.cancel()
    await asyncio.sleep(0)

    restarted = Orchestrator(SQLiteStore(path), [saga])
    assert await restarted.recover() == [saga_id]
    result = await asyncio.wait_for(restarted.wait(saga_id), 5)
    assert result.status is SagaStatus.SUCCEEDED
    assert log == ["first", "second", "second", "third"]
    assert result.results == {"first": 1, "second": "2", "third": 3}
    assert await restarted.recover() == []


async def test_recover_skips_sagas_this_worker_is_driving(tmp_path: Path) -> None:
    path = tmp_path / "twice.db"
    gate = asyncio.Event()
    runs: list[str] = []

    async def gated(ctx: Order) -> None:
        runs.append("a")
        await gate.wait()

    saga = Saga("order", [Step("a", gated)], context=Order)
    orch = Orchestrator(SQLiteStore(path), [saga])
    saga_id = await orch.start(saga)
    await asyncio.sleep(0.01)
    assert await orch.recover() == []
    gate.set()
    result = await asyncio.wait_for(orch.wait(saga_id), 5)
    assert result.status is SagaStatus.SUCCEEDED
    assert runs == ["a"]


async def test_plain_functions_run_in_a_thread_unless_not_blocking(
    orch: Orchestrator,
) -> None:
    loop_thread = threading.get_ident()
    seen: dict[str, int] = {}

    def where(name: str) -> Callable[[Order], None]:
        def action(ctx: Order) -> None:
            seen[name] = threading.get_ident()

        return action

    saga = Saga(
        "threads",
        [
            Step("threaded", where("threaded")),
            Step("inline", where("inline"), blocking=False),
        ],
        context=Order,
    )
    result = await orch.run(saga, Order())
    assert result.status is SagaStatus.SUCCEEDED
    assert seen["inline"] == loop_thread
    assert seen["threaded"] != loop_thread
