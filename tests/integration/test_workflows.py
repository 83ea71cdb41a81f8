"""Workflow-style sagas end to end: both examples on SQLite and PostgreSQL,
with a fake clock (a 5-minute timer runs in milliseconds)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from examples.workflows.payment_webhook import CONFIRMED, TIME_OUT, PaymentService
from examples.workflows.transfer_fund import Bank, Transfer, build_app
from typer.testing import CliRunner

from sagakit.adapters.store.sql import queries
from sagakit.adapters.store.workflow_memory import InMemoryWorkflowStore
from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.cli.main import app as cli
from sagakit.errors import (
    ConcurrencyError,
    DefinitionError,
    SagaAlreadyExists,
    SagaNotFound,
    StateError,
)
from sagakit.ports.workflow_store import WorkflowStatus, WorkflowStore
from sagakit.testing import FakeClock
from sagakit.workflow import WorkflowApp
from tests.conftest import (
    BACKENDS,
    SERVER_URLS,
    Stores,
    run_sync,
    workflow_store_at,
)

Opener = Callable[[], Awaitable[WorkflowStore]]


@pytest.fixture(params=BACKENDS)
async def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Opener]:
    """Opens stores on one database (a new handle per call, as after a restart)."""

    stores: Stores[WorkflowStore] = Stores(
        request,
        lambda: SQLiteWorkflowStore(tmp_path / "workflows.db"),
        workflow_store_at,
    )
    yield stores
    await stores.close()


@pytest.fixture
async def store(open_store: Opener) -> WorkflowStore:
    return await open_store()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def transfer(amount: int = 10) -> Transfer:
    return Transfer(source="alice", target="bob", amount=amount)


# -- transfer_fund -----------------------------------------------------------


async def test_transfer_debits_then_credits(
    store: WorkflowStore, clock: FakeClock
) -> None:
    bank = Bank(balances={"alice": 100})
    app = build_app(store, bank, clock=clock)
    iid = await app.start("transfer-1", "debit", transfer())
    assert await app.run_until_idle() == 2
    record = await app.get(iid)
    assert record.status is WorkflowStatus.SUCCEEDED
    assert record.transitions == 2
    assert bank.balances == {"alice": 90, "bob": 10}
    history = await app.history(iid)
    assert [(h.step, h.outcome) for h in history] == [
        ("debit", "started"),
        ("debit", "succeeded"),
        ("credit", "succeeded"),
    ]


async def test_start_is_idempotent(store: WorkflowStore, clock: FakeClock) -> None:
    bank = Bank()
    app = build_app(store, bank, clock=clock)
    assert await app.start("t", "debit", transfer()) == "t"
    assert await app.start("t", "debit", transfer()) == "t"
    with pytest.raises(SagaAlreadyExists, match="started with another call"):
        await app.start("t", "debit", transfer(99))
    await app.run_until_idle()
    assert bank.effects == [("debit", "alice", 10), ("credit", "bob", 10)]
    assert await app.start("t", "debit", transfer()) == "t"  # done: still it
    generated = await app.start(None, "debit", transfer())
    assert len(generated) == 32


async def test_custom_retry_counts_in_state_with_durable_delays(
    store: WorkflowStore, clock: FakeClock
) -> None:
    bank = Bank(failing_credits=2)
    app = build_app(store, bank, clock=clock)
    iid = await app.start("t", "debit", transfer())
    await app.run_until_idle()  # debit, credit fails once: retry in 2 s
    record = await app.get(iid)
    assert (record.status, record.step, record.state) == (
        WorkflowStatus.PENDING,
        "credit",
        {"credit_failures": 1},
    )
    assert record.due_at == clock.now() + 2
    assert await app.advance(1.9) == 0
    assert await app.advance(0.1) == 1  # fails again: retry in 4 s
    assert await app.advance(3.9) == 0
    assert await app.advance(0.1) == 1
    record = await app.get(iid)
    assert record.status is WorkflowStatus.SUCCEEDED
    assert record.state == {"credit_failures": 2}
    assert bank.balances == {"alice": -10, "bob": 10}


async def test_custom_retry_gives_up_into_a_refund(
    store: WorkflowStore, clock: FakeClock
) -> None:
    bank = Bank(failing_credits=3)
    app = build_app(store, bank, clock=clock, max_credit_tries=3)
    iid = await app.start("t", "debit", transfer())
    await app.advance(3600)
    record = await app.get(iid)
    assert record.status is WorkflowStatus.SUCCEEDED
    assert record.state == {"credit_failures": 3, "refunded": True}
    assert bank.balances == {"alice": 0}


async def test_poison_step_fails_after_max_attempts(
    store: WorkflowStore, clock: FakeClock
) -> None:
    bank = Bank(broken=True)
    app = build_app(store, bank, clock=clock, max_attempts=3, retry_delay=1.0)
    iid = await app.start("t", "debit", transfer())
    assert await app.advance(3600) == 3
    record = await app.get(iid)
    assert record.status is WorkflowStatus.FAILED
    assert record.attempts == 3
    assert record.error is not None
    assert "BankUnavailable: cannot debit alice" in record.error
    assert "after 3 attempts" in record.error
    history = await app.history(iid)
    assert [h.outcome for h in history] == ["started", "retrying", "retrying", "failed"]
    assert [h.detail for h in history[1:3]] == [{"delay": 1.0}, {"delay": 2.0}]
    assert await app.advance(3600) == 0  # never runs again


async def test_an_expired_lease_lets_another_worker_rerun_the_step(
    store: WorkflowStore, clock: FakeClock
) -> None:
    bank = Bank()
    app = build_app(store, bank, clock=clock, lease=30.0)
    iid = await app.start("t", "debit", transfer())
    # A worker claims the instance and dies mid-step (it never commits).
    await store.claim(app.name, "dead", ["debit"], now=clock.now(), lease=30.0)
    assert await app.run_until_idle() == 0
    await app.advance(31)
    record = await app.get(iid)
    assert record.status is WorkflowStatus.SUCCEEDED
    history = await app.history(iid)
    assert history[1].attempt == 2  # the second start of debit


# -- payment_webhook ---------------------------------------------------------


async def test_webhook_delivered_in_time_confirms(
    store: WorkflowStore, clock: FakeClock
) -> None:
    service = PaymentService(store, clock=clock)
    iid = await service.pay("o1", 10)
    await service.app.run_until_idle()
    await service.app.advance(120)
    assert (await service.app.get(iid)).step == "webhook"
    await service.deliver_webhook(iid, CONFIRMED)
    assert await service.app.run_until_idle() == 1
    record = await service.app.get(iid)
    assert record.status is WorkflowStatus.SUCCEEDED
    assert record.state == {"order_id": "o1", "outcome": CONFIRMED}
    assert await service.app.advance(600) == 0  # the timer was replaced
    assert service.gateway.cancelled == []
    outcomes = [h.outcome for h in await service.app.history(iid)]
    assert outcomes == ["started", "succeeded", "delivered", "succeeded"]


async def test_webhook_not_delivered_times_out_after_five_minutes(
    store: WorkflowStore, clock: FakeClock
) -> None:
    service = PaymentService(store, clock=clock)
    began = time.monotonic()
    iid = await service.pay("o1", 10)
    await service.app.run_until_idle()
    assert await service.app.advance(299.9) == 0
    assert (await service.app.get(iid)).status is WorkflowStatus.PENDING
    assert await service.app.advance(0.1) == 1
    record = await service.app.get(iid)
    assert record.status is WorkflowStatus.SUCCEEDED
    assert record.state["outcome"] == TIME_OUT
    assert service.gateway.cancelled == ["o1"]
    assert time.monotonic() - began < 5  # 300 simulated seconds


async def test_call_while_the_step_runs_is_a_concurrency_error(
    store: WorkflowStore, clock: FakeClock
) -> None:
    service = PaymentService(store, clock=clock)
    service.gateway.hold = asyncio.Event()
    iid = await service.pay("o1", 10)
    running = asyncio.create_task(service.app.run_until_idle())
    for _ in range(1000):
        if (await service.app.get(iid)).status is WorkflowStatus.RUNNING:
            break
        await asyncio.sleep(0.01)
    before = await service.app.get(iid)
    with pytest.raises(ConcurrencyError, match="is running step deposit"):
        await service.deliver_webhook(iid, CONFIRMED)
    assert await service.app.get(iid) == before
    service.gateway.hold.set()
    await running
    await service.deliver_webhook(iid, CONFIRMED)
    await service.app.run_until_idle()
    assert (await service.app.get(iid)).state["outcome"] == CONFIRMED


async def test_bad_calls_change_nothing_and_the_instance_completes(
    store: WorkflowStore, clock: FakeClock
) -> None:
    service = PaymentService(store, clock=clock)
    app = service.app
    iid = await service.pay("o1", 10)
    with pytest.raises(StateError, match="pending on step 'deposit', not 'webhook'"):
        await service.deliver_webhook(iid, CONFIRMED)
    await app.run_until_idle()
    before = await app.get(iid)
    with pytest.raises(DefinitionError, match="'refund' is not registered"):
        await app.call(iid, "refund", CONFIRMED)
    with pytest.raises(StateError, match="pending on step 'webhook', not 'deposit'"):
        await app.call(iid, "deposit", {"order_id": "o1", "amount": 1})
    with pytest.raises(SagaNotFound, match="nope"):
        await app.call("nope", "webhook", CONFIRMED)
    assert await app.get(iid) == before
    await service.deliver_webhook(iid, CONFIRMED)
    await app.run_until_idle()
    assert (await app.get(iid)).status is WorkflowStatus.SUCCEEDED
    with pytest.raises(StateError, match="has finished"):
        await service.deliver_webhook(iid, CONFIRMED)


async def test_timers_survive_a_restart(open_store: Opener, clock: FakeClock) -> None:
    service = PaymentService(await open_store(), clock=clock, timeout=3600)
    iid = await service.pay("o1", 10)
    await service.app.run_until_idle()
    await service.app.store.close()
    del service
    reopened = PaymentService(await open_store(), clock=clock, timeout=3600)
    assert await reopened.app.advance(3599) == 0
    assert await reopened.app.advance(1) == 1
    record = await reopened.app.get(iid)
    assert record.status is WorkflowStatus.SUCCEEDED
    assert record.state["outcome"] == TIME_OUT
    assert reopened.gateway.cancelled == ["o1"]


async def test_log_handler_gets_step_records_and_sagakit_records(
    store: WorkflowStore, clock: FakeClock
) -> None:
    records: list[logging.LogRecord] = []
    service = PaymentService(store, clock=clock, log_handler=records.append)
    also: list[logging.LogRecord] = []
    service.app.add_log_handler(also.append)
    iid = await service.pay("o1", 10)
    await service.app.advance(300)
    messages = [(getattr(r, "action", None), r.getMessage()) for r in records]
    assert (None, "charged; waiting for the webhook") in messages
    assert (None, "payment o1: TIME_OUT") in messages
    actions = [a for a, _ in messages if a is not None]
    assert actions.count("step_started") == 2
    assert actions.count("step_finished") == 2
    assert all(r.instance_id == iid for r in records)  # type: ignore[attr-defined]
    steps = {r.step for r in records if hasattr(r, "step")}
    assert steps == {"deposit", "webhook"}
    assert len(also) == len(records)


async def test_log_handler_sees_step_failed(clock: FakeClock) -> None:
    records: list[logging.LogRecord] = []
    app = build_app(
        InMemoryWorkflowStore(),
        Bank(broken=True),
        clock=clock,
        log_handler=records.append,
        max_attempts=2,
    )
    await app.start("t", "debit", transfer())
    await app.advance(60)
    failed = [r for r in records if getattr(r, "action", None) == "step_failed"]
    assert [r.retrying for r in failed] == [True, False]  # type: ignore[attr-defined]


# -- definition errors and bounds --------------------------------------------


async def test_a_step_of_another_app_fails_the_instance(clock: FakeClock) -> None:
    store = InMemoryWorkflowStore()
    other = WorkflowApp("other", store, clock=clock)

    @other.step
    def elsewhere(input: Any) -> None:
        return None

    app = WorkflowApp("mine", store, clock=clock)

    @app.step
    def first(input: Any) -> Any:
        return elsewhere(input)

    with pytest.raises(DefinitionError, match="not registered"):
        await app.start("x", elsewhere)
    await app.start("x", first)
    await app.run_until_idle()
    record = await app.get("x")
    assert record.status is WorkflowStatus.FAILED
    assert record.error is not None
    assert "'elsewhere' is not registered on this app" in record.error
    assert record.attempts == 1  # not retried


async def test_max_transitions_bounds_a_loop(clock: FakeClock) -> None:
    app = WorkflowApp("loop", InMemoryWorkflowStore(), clock=clock, max_transitions=5)

    @app.step
    def ping(input: int) -> Any:
        return ping(input + 1)

    await app.start("x", ping, 0)
    assert await app.run_until_idle() == 5
    record = await app.get("x")
    assert record.status is WorkflowStatus.FAILED
    assert record.error is not None
    assert "max_transitions=5" in record.error
    assert record.input == 4


async def test_duplicate_step_and_non_json_input_are_definition_errors() -> None:
    app = WorkflowApp("dup", InMemoryWorkflowStore(), clock=FakeClock())

    @app.step
    def one(input: Any) -> None:
        return None

    with pytest.raises(DefinitionError, match="defined twice"):
        app.step(one.fn)
    with pytest.raises(DefinitionError, match="not JSON"):
        await app.start("x", one, object())


async def test_waiting_step_runs_only_when_called(clock: FakeClock) -> None:
    app = WorkflowApp("wait", InMemoryWorkflowStore(), clock=clock)
    seen: list[Any] = []

    @app.step
    def begin(input: Any, state: dict[str, Any], set_state: Any) -> Any:
        set_state({"begun": True})
        return approve.wait()

    @app.step
    def approve(input: Any, state: dict[str, Any]) -> None:
        seen.append((input, state))

    await app.start("x", begin)
    assert await app.advance(10**6) == 1
    await app.call("x", "approve", {"by": "ops"})
    await app.run_until_idle()
    assert seen == [({"by": "ops"}, {"begun": True})]


# -- inspection: sagakit workflows list / show ----------------------------------


@pytest.mark.parametrize("dialect", BACKENDS)
def test_cli_lists_and_shows_instances(
    request: pytest.FixtureRequest, tmp_path: Path, dialect: str
) -> None:
    """The CLI opens each store as it is; a transfer retrying on a timer
    shows its pending call, state and history."""
    url = (
        str(tmp_path / "cli.db")
        if dialect == "sqlite"
        else request.getfixturevalue(SERVER_URLS[dialect])
    )

    async def fill() -> None:
        store: WorkflowStore
        if dialect == "sqlite":
            store = SQLiteWorkflowStore(url)
        else:
            store = await workflow_store_at(url)
        app = build_app(store, Bank(failing_credits=1), clock=FakeClock())
        await app.start("transfer-cli-1", "debit", transfer())
        await app.run_until_idle()
        await store.close()

    run_sync(fill())
    runner = CliRunner()
    listed = runner.invoke(cli, ["--db", url, "workflows", "list"])
    assert listed.exit_code == 0, listed.output
    assert "transfer-cli-1" in listed.output
    assert "1 of 1 workflow instance(s): 1 pending" in listed.output
    shown = runner.invoke(cli, ["--db", url, "workflows", "show", "transfer-cli"])
    assert shown.exit_code == 0, shown.output
    assert "pending call  credit" in shown.output
    assert '"credit_failures": 1' in shown.output
    unknown = runner.invoke(cli, ["--db", url, "workflows", "show", "nope-nope"])
    assert unknown.exit_code == 2
    assert "no workflow instance with id or id prefix 'nope-nope'" in unknown.stderr


def test_listing_newest_first_uses_the_created_index(tmp_path: Path) -> None:
    store = SQLiteWorkflowStore(tmp_path / "plan.db")
    plan = store.database.conn.execute(
        f"EXPLAIN QUERY PLAN {queries('sqlite')['workflow_list']}",
        (None, None, 50, None),
    ).fetchall()
    assert any("sagakit_workflow_created" in str(row[-1]) for row in plan), plan
