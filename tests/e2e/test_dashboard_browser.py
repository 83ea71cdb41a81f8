"""``sagakit dashboard`` in a subprocess, driven by headless Chromium.

Uses Debian's Chromium (``/usr/bin/chromium``, or ``$SAGAKIT_CHROMIUM``)
through the ``playwright`` package; Playwright never downloads a browser here.
Without Chromium or playwright the browser test is skipped, and fails when
``CI=true``. Screenshots are kept in ``$SAGAKIT_ARTIFACTS/dashboard`` (default
``tests/artifacts/dashboard``, which git ignores).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.workflows.transfer_fund import Bank, Transfer, build_app

from sagakit import Orchestrator, SagaStatus, SQLiteStore
from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.examples.trip import TripContext, fully_booked_trip, happy_trip
from sagakit.ports.workflow_store import WorkflowStatus
from tests.e2e import dashboard_app
from tests.e2e.test_cli import sagakit

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TOKEN = "browser-test-token-0123456789"  # noqa: S105 - a test token
HOSTILE = "<img src=x onerror=alert(1)>"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STATUSES = [s.value for s in SagaStatus]
WORKFLOW_STATUSES = [s.value for s in WorkflowStatus]


def artifacts() -> Path:
    base = os.environ.get("SAGAKIT_ARTIFACTS") or str(REPO / "tests" / "artifacts")
    path = Path(base) / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    return path


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run)")
    pytest.skip(reason)


def chromium() -> str:
    path = os.environ.get("SAGAKIT_CHROMIUM") or shutil.which("chromium")
    if not path or not Path(path).exists():
        unavailable(
            "Debian chromium not found (make test installs it as root: "
            "apt-get install chromium)"
        )
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def dashboard(db: Path, tmp: Path, *args: str, token: str | None) -> Iterator[Server]:
    """``sagakit --db DB dashboard ARGS`` on a free port, until the block ends."""
    port = free_port()
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SAGAKIT_DATABASE_URL", "SAGAKIT_DASHBOARD_TOKEN")
    }
    if token is not None:
        environ["SAGAKIT_DASHBOARD_TOKEN"] = token
    log = tmp / f"dashboard-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sagakit.cli.main",
                "--db",
                str(db),
                "--log-level",
                "INFO",
                "dashboard",
                "--port",
                str(port),
                *args,
            ],
            cwd=REPO,
            env=environ,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                pytest.fail(f"the dashboard exited:\n{server.output()}")
            try:
                httpx.get(f"{server.url}/api/counts", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the dashboard did not start:\n{server.output()}")
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def seed(db: Path) -> dict[str, str]:
    """One saga in each interesting state, and two workflow instances (a
    transfer from a hostile account name that failed, one due in an hour);
    returns the sagas' ids by role."""
    store = SQLiteStore(db)
    orch = Orchestrator(store, [dashboard_app.trip_saga, dashboard_app.order_saga])
    transfers = build_app(SQLiteWorkflowStore(store), Bank(broken=True), max_attempts=1)
    try:
        hostile = Transfer(source=HOSTILE, target="bob", amount=5)
        await transfers.start("transfer-hostile", "debit", hostile)
        await transfers.run_until_idle()
        later = Transfer(source="alice", target="bob", amount=5)
        await transfers.start("transfer-later", "debit", later, delay=3600)
        done = await orch.run(dashboard_app.trip_saga, happy_trip())
        undone = await orch.run(dashboard_app.trip_saga, fully_booked_trip())
        dashboard_app.SHIPPING.down = True
        try:
            failed = await orch.run(dashboard_app.order_saga)
        finally:
            dashboard_app.SHIPPING.down = False
        waiting = await orch.submit(
            dashboard_app.trip_saga,
            TripContext(traveller=HOSTILE, destination="Oslo"),
        )
    finally:
        await orch.close()
    assert failed.status is SagaStatus.FAILED
    return {
        "succeeded": done.saga_id,
        "compensated": undone.saga_id,
        "failed": failed.saga_id,
        "running": waiting,
    }


def counts(page: Any, statuses: list[str] = STATUSES) -> dict[str, str]:
    return {
        s: page.locator(f'#counts [data-status="{s}"]').inner_text() for s in statuses
    }


def list_page(page: Any, url: str, ids: dict[str, str], shots: Path) -> None:
    """The list with live counts (the script has refreshed them once), and a
    compensated trip's timeline."""
    page.goto(f"{url}/")
    page.wait_for_selector("#counts[data-refreshed]")
    assert counts(page) == {
        "running": "1",
        "compensating": "0",
        "succeeded": "1",
        "compensated": "1",
        "compensation_failed": "0",
        "failed": "1",
    }
    assert page.locator("table.sagas tbody tr").count() == 4
    page.screenshot(path=shots / "01-list.png", full_page=True)
    page.click(f'a[href="/sagas/{ids["compensated"]}"]')
    page.wait_for_selector("table.timeline")
    assert page.locator("tr.kind-compensation").count() >= 2
    page.screenshot(path=shots / "02-compensated.png", full_page=True)


def cancel_running(page: Any, url: str, ids: dict[str, str], shots: Path) -> None:
    """Cancel the waiting trip with the token; its hostile context stays text."""
    page.goto(f"{url}/")
    page.click(f'a[href="/sagas/{ids["running"]}"]')
    page.wait_for_selector("form.action")
    assert HOSTILE in page.locator("pre.context").inner_text()
    page.fill('input[name="token"]', TOKEN)
    page.fill('input[name="operator"]', "maria")
    page.fill('input[name="reason"]', "traveller changed plans")
    page.screenshot(path=shots / "03-running.png", full_page=True)
    page.click("form.action button[type=submit]")
    page.wait_for_selector(".flash.ok")
    assert (
        page.locator(".flash.ok")
        .inner_text()
        .startswith(
            "Cancel requested: the saga is now compensating; no worker owns this saga"
        )
    )
    assert page.locator("table.audit td.operator").inner_text() == "maria"
    assert page.locator("#status").inner_text() == "compensating"
    assert "Cancelled: traveller changed plans" in page.content()
    page.screenshot(path=shots / "04-cancelled.png", full_page=True)


def retry_failed(page: Any, url: str, ids: dict[str, str], shots: Path) -> None:
    """Retry the failed order: signed in by now, so no token field."""
    page.goto(f"{url}/?status=failed")
    page.click(f'a[href="/sagas/{ids["failed"]}"]')
    page.wait_for_selector("form.action")
    assert page.locator('input[name="token"]').count() == 0
    page.fill('form.action input[name="reason"]', "payment service is back")
    page.screenshot(path=shots / "05-failed.png", full_page=True)
    page.click("form.action button[type=submit]")
    page.wait_for_selector(".flash.ok")
    assert (
        page.locator(".flash.ok")
        .inner_text()
        .startswith(
            "Retry requested: the saga is now running; no worker owns this saga"
        )
    )
    assert page.locator("#status").inner_text() == "running"
    page.screenshot(path=shots / "06-retried.png", full_page=True)


def worker_finishes(page: Any, url: str, db: Path, shots: Path) -> None:
    """A worker runs what the actions handed over; the counts panel follows
    without a reload."""
    from playwright.sync_api import expect  # noqa: PLC0415 - optional in tests

    page.goto(f"{url}/")
    page.wait_for_selector("#counts[data-refreshed]")
    assert counts(page)["running"] == "1"
    assert counts(page)["compensating"] == "1"
    recovered = sagakit("--db", str(db), "recover", "tests.e2e.dashboard_app", cwd=REPO)
    assert recovered.returncode == 0, recovered.stderr
    # polled locators, not page.wait_for_function: the CSP forbids eval
    expect(page.locator('#counts [data-status="succeeded"]')).to_have_text(
        "2", timeout=15_000
    )
    expect(page.locator('#counts [data-status="compensated"]')).to_have_text(
        "2", timeout=15_000
    )
    assert counts(page)["running"] == "0"
    assert counts(page)["compensating"] == "0"
    expect(page.locator("#counts-reload")).to_be_visible()
    page.screenshot(path=shots / "07-live-counts.png", full_page=True)


def workflows_page(page: Any, url: str, shots: Path) -> None:
    """The nav leads to the workflow list, whose counts stay live too; the
    failed transfer's hostile account name stays text."""
    page.goto(f"{url}/")
    page.click('nav.sections a[href="/workflows"]')
    page.wait_for_selector("#counts[data-refreshed]")
    expected = dict(pending="1", running="0", succeeded="0", failed="1")
    assert counts(page, WORKFLOW_STATUSES) == expected
    assert page.locator("table.workflows tbody tr").count() == 2
    page.screenshot(path=shots / "08-workflows.png", full_page=True)
    page.click('a[href="/workflows/transfer_fund/transfer-hostile"]')
    page.wait_for_selector("pre#state")
    assert HOSTILE in page.locator("pre#input").inner_text()
    assert HOSTILE in page.locator("dd.error").inner_text()
    assert page.locator("#status").inner_text() == "failed"
    page.screenshot(path=shots / "09-workflow.png", full_page=True)


def test_operator_cancels_and_retries_in_the_browser(tmp_path: Path) -> None:
    executable = chromium()
    try:
        from playwright.sync_api import Dialog, sync_playwright  # noqa: PLC0415
    except ImportError:
        unavailable("the playwright package is not installed (pip install playwright)")
    db = tmp_path / "dash.db"
    ids = asyncio.run(seed(db))
    shots = artifacts()
    dialogs: list[str] = []
    errors: list[str] = []

    with (
        dashboard(
            db, tmp_path, "--sagas", "tests.e2e.dashboard_app", token=TOKEN
        ) as server,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )

        def on_dialog(dialog: Dialog) -> None:  # an alert() would be an XSS
            dialogs.append(dialog.message)
            dialog.dismiss()

        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", on_dialog)
            page.on("pageerror", lambda e: errors.append(str(e)))
            list_page(page, server.url, ids, shots)
            cancel_running(page, server.url, ids, shots)
            retry_failed(page, server.url, ids, shots)
            worker_finishes(page, server.url, db, shots)
            workflows_page(page, server.url, shots)
        finally:
            browser.close()

    assert dialogs == []  # nothing user-controlled ran as script
    assert errors == []
    assert "dashboard action denied" not in server.output()


def test_without_a_token_the_dashboard_is_read_only(tmp_path: Path) -> None:
    db = tmp_path / "ro.db"
    ids = asyncio.run(seed(db))
    with dashboard(
        db, tmp_path, "--sagas", "tests.e2e.dashboard_app", token=None
    ) as server:
        refused = httpx.post(
            f"{server.url}/sagas/{ids['failed']}/retry",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        )
        page = httpx.get(f"{server.url}/", timeout=5).text
        workflows = httpx.get(f"{server.url}/api/workflow-counts", timeout=5).json()
    assert refused.status_code == 403
    assert workflows["counts"] == {
        "pending": 1,
        "running": 0,
        "succeeded": 0,
        "failed": 1,
    }
    assert "read-only" in refused.json()["detail"]
    assert "read-only" in page
    assert "read-only mode: no token" in server.output()
    assert "SAGAKIT_DASHBOARD_TOKEN" in server.output()
