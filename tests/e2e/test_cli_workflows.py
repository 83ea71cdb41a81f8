"""``sagakit workflows list | show``, run as a subprocess against a SQLite
file filled by the workflow examples (``examples/workflows``)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from examples.workflows.payment_webhook import PaymentService
from examples.workflows.transfer_fund import Bank, Transfer, build_app

from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.testing import FakeClock
from sagakit.views.format import relative
from sagakit.workflow import FatalError, WorkflowApp
from tests.e2e.test_cli import assert_one_error_line, rows, sagakit

WEBHOOK_TIMEOUT = 300.0  # the payment's wait for its webhook
WEBHOOK_DUE: dict[Path, float] = {}
"""When each filled database's ``pay-o1`` webhook timer is due."""

pytestmark = pytest.mark.e2e

TRANSFER = Transfer(source="alice", target="bob", amount=10)


async def fill(path: Path) -> float:
    """One instance in each situation an operator meets, in this order:
    succeeded, failed, retrying on a timer, waiting for a webhook (5 min),
    waiting for an external call, running (a worker holds it), and a
    transfer due in an hour whose id ``pay-o1`` the payment app uses too.
    The clock moves a second between starts."""
    store = SQLiteWorkflowStore(path)
    clock = FakeClock(start=time.time() - 60)
    ok = build_app(store, Bank(balances={"alice": 100}), clock=clock)
    await ok.start("transfer-ok-0001", "debit", TRANSFER)
    await ok.run_until_idle()
    clock.advance(1)
    broken = build_app(store, Bank(broken=True), clock=clock, max_attempts=2)
    await broken.start("transfer-broken-01", "debit", TRANSFER)
    await broken.advance(10)
    retry = build_app(store, Bank(failing_credits=1), clock=clock)
    await retry.start("transfer-retry-01", "debit", TRANSFER)
    await retry.run_until_idle()
    clock.advance(1)
    payments = PaymentService(store, clock=clock, timeout=WEBHOOK_TIMEOUT)
    webhook_due = clock.now() + WEBHOOK_TIMEOUT
    await payments.pay("o1", 10)
    await payments.app.run_until_idle()

    approvals = WorkflowApp("approval", store, clock=clock)

    @approvals.step
    def decide(input: Any, state: dict[str, Any]) -> None:
        return None

    @approvals.step
    def ask(input: Any, state: dict[str, Any], set_state: Any) -> Any:
        set_state({"asked": input})
        return decide.wait()

    clock.advance(1)
    await approvals.start("approve-42", "ask", "manager")
    await approvals.run_until_idle()
    clock.advance(1)
    await payments.pay("o2", 20)  # a worker claims it and is never heard of
    await store.claim(
        "payment_webhook", "worker-7", ["deposit"], now=clock.now(), lease=3600
    )
    clock.advance(1)
    await ok.start("pay-o1", "debit", TRANSFER, delay=3600)  # not run
    await store.close()
    return webhook_due


async def fill_endings(path: Path) -> None:
    """Two ended checkouts: ``checkout-ok`` with the receipt its step
    returned, ``checkout-stolen`` failed at once on a ``FatalError`` (though
    five attempts were allowed)."""
    store = SQLiteWorkflowStore(path)
    app = WorkflowApp("checkout", store, clock=FakeClock(), max_attempts=5)

    @app.step
    def charge(order: dict[str, str]) -> dict[str, Any]:
        if order["card"] == "stolen":
            raise FatalError(f"card of order {order['id']} reported stolen")
        return {"order": order["id"], "total": 12.5, "note": "merci é"}

    await app.start("checkout-ok", "charge", {"id": "o1", "card": "visa"})
    await app.start("checkout-stolen", "charge", {"id": "o2", "card": "stolen"})
    await app.run_until_idle()
    await store.close()


@pytest.fixture(scope="module")
def endings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("endings") / "endings.db"
    asyncio.run(fill_endings(path))
    return path


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("workflows") / "workflows.db"
    WEBHOOK_DUE[path] = asyncio.run(fill(path))
    return path


def webhook_phrases(db: Path, before: float) -> set[str]:
    """How the CLI may say when ``pay-o1``'s webhook timer is due, seen
    from any moment between ``before`` and now (the filled database's
    timers are on the wall clock, and a loaded machine takes its time)."""
    due = WEBHOOK_DUE[db]
    return {relative(due, before), relative(due, time.time())}


def listed(db: Path, cwd: Path, *args: str) -> list[list[str]]:
    result = sagakit("--db", str(db), "workflows", "list", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return rows(result.stdout)


def show(db: Path, cwd: Path, *args: str) -> str:
    result = sagakit("--db", str(db), "workflows", "show", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_list_shows_every_instance_newest_first(db: Path, tmp_path: Path) -> None:
    before = time.time()
    result = sagakit("--db", str(db), "workflows", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    title = "7 of 7 workflow instance(s): 4 pending, 1 running, 1 succeeded, 1 failed"
    assert title in result.stdout
    header = next(line for line in result.stdout.splitlines() if "┃" in line)
    assert header.replace("┃", " ").split() == [
        "id",
        "app",
        "status",
        "step",
        "due",
        "updated",
    ]
    table = rows(result.stdout)
    assert [r[:4] for r in table] == [
        ["pay-o1", "transfer_fund", "pending", "debit"],
        ["pay-o2", "payment_webhook", "running", "deposit"],
        ["approve-42", "approval", "pending", "decide"],
        ["pay-o1", "payment_webhook", "pending", "webhook"],
        ["transfer-retry-01", "transfer_fund", "pending", "credit"],
        ["transfer-broken-01", "transfer_fund", "failed", "debit"],
        ["transfer-ok-0001", "transfer_fund", "succeeded", ""],
    ]
    due = {(r[0], r[1]): r[4] for r in table}
    assert due["approve-42", "approval"] == "on call"
    assert due["pay-o1", "payment_webhook"] in webhook_phrases(db, before)
    assert due["transfer-retry-01", "transfer_fund"].endswith("s ago")  # overdue
    assert due["pay-o1", "transfer_fund"].startswith("in 59m")
    assert due["transfer-ok-0001", "transfer_fund"] == ""
    assert all(r[5].endswith("ago") for r in table)


def test_list_filters(db: Path, tmp_path: Path) -> None:
    pending = listed(db, tmp_path, "--status", "PENDING")
    assert [r[0] for r in pending] == [
        "pay-o1",
        "approve-42",
        "pay-o1",
        "transfer-retry-01",
    ]
    one = listed(db, tmp_path, "--limit", "1")
    assert [(r[0], r[1]) for r in one] == [("pay-o1", "transfer_fund")]
    failed = listed(db, tmp_path, "--status", "failed", "--app", "transfer_fund")
    assert [r[0] for r in failed] == ["transfer-broken-01"]
    assert listed(db, tmp_path, "--app", "nope") == []


def test_show_a_retrying_transfer(db: Path, tmp_path: Path) -> None:
    out = show(db, tmp_path, "transfer-r")  # a unique prefix
    assert "transfer-retry-01" in out
    assert "pending call  credit" in out
    assert '"source": "alice"' in out  # the pending call's input
    assert '"credit_failures": 1' in out  # the state
    history = [r for r in rows(out) if len(r) == 5]
    assert [(r[1], r[3]) for r in history] == [
        ("debit", "started"),
        ("debit", "succeeded"),
        ("credit", "succeeded"),  # it called itself again, in two seconds
    ]
    assert '"next": "credit", "delay": 2.0' in history[-1][4]


def test_show_a_failed_transfer(db: Path, tmp_path: Path) -> None:
    out = show(db, tmp_path, "transfer-broken-01")
    assert "failed step  debit" in out
    assert "BankUnavailable: cannot debit alice (after 2 attempts)" in out
    history = [r for r in rows(out) if len(r) == 5]
    assert [r[3] for r in history] == ["started", "retrying", "failed"]


def test_show_timers_calls_and_workers(db: Path, tmp_path: Path) -> None:
    before = time.time()
    webhook = show(db, tmp_path, "pay-o1", "--app", "payment_webhook")
    assert "pending call  webhook" in webhook
    assert any(f"({when})" in webhook for when in webhook_phrases(db, before))
    assert '"order_id": "o1"' in webhook
    waiting = show(db, tmp_path, "approve-42")
    assert "due           when called (an external event)" in waiting
    assert '"asked": "manager"' in waiting
    running = show(db, tmp_path, "pay-o2")
    assert "running step  deposit" in running
    assert "worker-7 (lease until" in running


def test_database_url_from_environment(db: Path, tmp_path: Path) -> None:
    result = sagakit(
        "workflows", "list", cwd=tmp_path, env={"SAGAKIT_DATABASE_URL": str(db)}
    )
    assert result.returncode == 0, result.stderr
    assert len(rows(result.stdout)) == 7
    assert not (tmp_path / "sagakit.db").exists()


def test_an_id_of_two_apps_needs_app(db: Path, tmp_path: Path) -> None:
    result = sagakit("--db", str(db), "workflows", "show", "pay-o1", cwd=tmp_path)
    assert_one_error_line(result)
    assert "payment_webhook/pay-o1, transfer_fund/pay-o1" in result.stderr
    assert "--app" in result.stderr
    mine = show(db, tmp_path, "pay-o1", "--app", "transfer_fund")
    assert "pending call  debit" in mine


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["list", "--status", "bogus"], "invalid --status 'bogus'"),
        (["list", "--limit", "0"], "--limit"),
        (["list", "--limit", "9" * 30], "--limit"),
        (["show", "f" * 32], "no workflow instance with id or id prefix"),
        (["show", "pay"], "at least 6 characters"),
        (["show", "transfer-"], "is ambiguous: transfer_fund/transfer-broken-01"),
        (["show", "transfer-ok-0001", "--app", "approval"], "no workflow instance"),
        (["show"], "Missing argument"),
    ],
)
def test_bad_input_is_one_error_line(
    db: Path, tmp_path: Path, args: list[str], reason: str
) -> None:
    result = sagakit("--db", str(db), "workflows", *args, cwd=tmp_path)
    assert_one_error_line(result)
    assert reason in result.stderr


@pytest.mark.parametrize("command", [["list"], ["show", "transfer-ok-0001"]])
def test_a_database_without_workflow_tables(tmp_path: Path, command: list[str]) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
    result = sagakit("--db", str(other), "workflows", *command, cwd=tmp_path)
    assert_one_error_line(result)
    assert "has no workflow tables" in result.stderr
    assert "sagakit db migrate" in result.stderr
    in_memory = sagakit("--db", "memory://", "workflows", *command, cwd=tmp_path)
    assert_one_error_line(in_memory)


def test_a_bare_workflows_prints_help(tmp_path: Path) -> None:
    result = sagakit("workflows", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "list" in result.stdout
    assert "show" in result.stdout


# After the tests above: their timers are read against the wall clock.


def test_show_the_result_a_workflow_ended_with(endings: Path, tmp_path: Path) -> None:
    out = show(endings, tmp_path, "checkout-ok")
    assert "status      succeeded" in out
    result = out.split("\nresult\n", 1)[1].split("\n\n", 1)[0]
    assert result.splitlines() == [
        "{",
        '  "note": "merci é",',
        '  "order": "o1",',
        '  "total": 12.5',
        "}",
    ]
    history = [r for r in rows(out) if len(r) == 5]
    assert [(r[1], r[3], r[4]) for r in history] == [
        ("charge", "started", '{"delay": 0.0}'),
        ("charge", "succeeded", '{"next": null}'),
    ]


def test_show_a_workflow_failed_by_a_fatal_error(endings: Path, tmp_path: Path) -> None:
    out = show(endings, tmp_path, "checkout-stolen")
    assert "status       failed" in out
    assert "attempts     1" in out  # five were allowed: not retried
    assert "error        step charge failed: FatalError: card of order o2" in out
    assert "\nresult\n" not in out
    history = [r for r in rows(out) if len(r) == 5]
    assert [(r[3], r[4]) for r in history] == [
        ("started", '{"delay": 0.0}'),
        ("failed", "FatalError: card of order o2 reported stolen"),
    ]
    listed_ = listed(endings, tmp_path)
    assert [(r[0], r[2]) for r in listed_] == [
        ("checkout-stolen", "failed"),
        ("checkout-ok", "succeeded"),
    ]
