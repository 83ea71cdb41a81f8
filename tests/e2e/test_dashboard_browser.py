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
from sagakit.adapters.store.event_sqlite import SQLiteEventStore
from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.examples.trip import TripContext, fully_booked_trip, happy_trip
from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventOutcome,
    EventRecord,
    Progress,
)
from sagakit.ports.workflow_store import WorkflowStatus
from sagakit.testing.contracts.store_locks import _save, queue, take
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


@dataclass
class Watch:
    """What the browser saw go wrong: dialogs (an ``alert()`` would be an
    XSS), script errors, console errors (a CSP refusal says "Refused to
    ..."), and answers >= 400 (but the favicon the dashboard has none of)."""

    dialogs: list[str]
    errors: list[str]


@contextmanager
def browsing(db: Path, tmp: Path) -> Iterator[tuple[Server, Any, Watch]]:
    """The dashboard on ``db`` (with the token and the test's sagas) and a
    page of headless Chromium watched for errors, until the block ends."""
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        unavailable("the playwright package is not installed (pip install playwright)")
    watch = Watch([], [])

    def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    def on_console(message: Any) -> None:
        if message.type == "error" and "status of 404" not in message.text:
            watch.errors.append(message.text)

    def on_response(response: Any) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            watch.errors.append(f"{response.status} {response.url}")

    with (
        dashboard(db, tmp, "--sagas", "tests.e2e.dashboard_app", token=TOKEN) as server,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", on_dialog)
            page.on("pageerror", lambda e: watch.errors.append(str(e)))
            page.on("console", on_console)
            page.on("response", on_response)
            yield server, page, watch
        finally:
            browser.close()


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
    db = tmp_path / "dash.db"
    ids = asyncio.run(seed(db))
    shots = artifacts()
    with browsing(db, tmp_path) as (server, page, watch):
        list_page(page, server.url, ids, shots)
        cancel_running(page, server.url, ids, shots)
        retry_failed(page, server.url, ids, shots)
        worker_finishes(page, server.url, db, shots)
        workflows_page(page, server.url, shots)
    assert watch.dialogs == []  # nothing user-controlled ran as script
    assert watch.errors == []
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


# -- finding and reading sagas -------------------------------------------------

CORRELATION = "booking-7f3a"
ROOM = "room:bergen:12"


async def seed_reading(db: Path) -> dict[str, str]:
    """What an operator looks for: a parallel trip that rolled back, a
    shipment paid by a sub-saga, a saga whose worker died (its lease ran
    out), one submitted that nobody claimed, a choreography's events, and
    enough sagas for three pages of two."""
    store = SQLiteStore(db)
    sagas = [dashboard_app.trip_saga, dashboard_app.shipment_saga]
    orch = Orchestrator(store, sagas)
    try:
        undone = await orch.run(
            dashboard_app.trip_saga, fully_booked_trip(), idempotency_key="order-81"
        )
        shipped = await orch.run(dashboard_app.shipment_saga, saga_id="shipment-1")
        orphan = await orch.submit(
            dashboard_app.trip_saga,
            TripContext(traveller="Grace Hopper", destination="Bergen"),
        )
        await _save(store, orphan, take(ROOM, step="book_hotel"))
        (taken,) = await store.claim("crashed-worker", ["trip"], lease=-1.0)
        assert taken.saga_id == orphan  # its lease is over: the worker is gone
        unclaimed = await orch.submit(
            dashboard_app.trip_saga,
            TripContext(traveller="Alan Turing", destination="Oslo"),
        )
        await _save(store, unclaimed, queue(ROOM, step="book_hotel", since=time.time()))
        events = SQLiteEventStore(store.database)
        progress = Progress(
            "booking", 60.0, lambda seen: ChoreographyStatus.COMPENSATED
        )
        for at, service, kind in [
            (1.0, "booking", "booking.requested"),
            (2.0, "parking", "parking.unavailable"),
            (3.0, "booking", "booking.cancelled"),
        ]:
            record = EventRecord(
                correlation_id=CORRELATION,
                choreography="booking",
                service=service,
                event_type=kind,
                message_id=f"{kind}-1",
                outcome=EventOutcome.PUBLISHED,
                recorded_at=1_700_000_000.0 + at,
            )
            await events.record_event(record, progress)
    finally:
        await orch.close()
    assert undone.status is SagaStatus.COMPENSATED
    assert shipped.status is SagaStatus.SUCCEEDED
    return {
        "compensated": undone.saga_id,
        "shipment": shipped.saga_id,
        "orphaned": orphan,
        "unclaimed": unclaimed,
    }


def pages_and_orphans(page: Any, url: str, ids: dict[str, str], shots: Path) -> None:
    """Two sagas a page, three pages (five sagas: the child too), each once;
    the one whose worker died is marked orphaned, the unclaimed one so."""
    page.goto(f"{url}/?limit=2")
    seen: list[str] = []
    for number in (1, 2, 3):
        links = page.locator("table.sagas tbody tr td.mono > a")
        seen += [links.nth(i).inner_text() for i in range(links.count())]
        if number == 1:
            orphaned = page.locator("tr", has=page.locator(".badge.orphaned"))
            assert ids["unclaimed"] in page.locator("table.sagas").inner_text()
            assert page.locator(".badge.unclaimed").count() == 1
            assert orphaned.count() == 1
            assert ids["orphaned"] in orphaned.inner_text()
            page.screenshot(path=shots / "10-page-1-orphaned.png", full_page=True)
        if number < 3:
            with page.expect_navigation():
                page.click("nav.pager a.next")
    assert len(seen) == len(set(seen)) == 5
    assert page.locator("nav.pager a.next").count() == 0  # the last page
    page.screenshot(path=shots / "11-page-3.png", full_page=True)
    with page.expect_navigation():
        page.click("nav.pager a.first")
    assert (
        page.locator("table.sagas tbody tr td.mono > a").first.inner_text() == (seen[0])
    )


def orphan_page(page: Any, url: str, ids: dict[str, str], shots: Path) -> None:
    """The orphaned saga says who left it and how to start a worker."""
    page.goto(f"{url}/sagas/{ids['orphaned']}")
    page.wait_for_selector("#nobody-drives")
    notice = page.locator("#nobody-drives").inner_text()
    assert "crashed-worker stopped driving it (its lease expired)" in notice
    assert "sagakit worker tests.e2e.dashboard_app" in notice
    assert page.locator("#driver-badge").inner_text() == "orphaned"
    facts = page.locator("dl.facts").inner_text()
    assert "last change" in facts
    assert page.locator("p.summary").inner_text().startswith("running for ")
    # the three bookings it was left with: in flight since its last change
    assert page.locator("svg#gantt rect.bar.action.inflight").count() == 3
    assert page.locator("svg#graph g.node.running").count() == 3
    page.screenshot(path=shots / "12-orphaned.png", full_page=True)


def search_box(page: Any, url: str, ids: dict[str, str], shots: Path) -> None:
    """By idempotency key, by context text, by correlation id (a
    choreography: its timeline opens), by the start of an id."""
    page.goto(f"{url}/")
    page.fill('form.search input[name="q"]', "order-81")
    page.click("form.search button")
    page.wait_for_selector("h2.results")
    assert page.locator("table.sagas tbody tr").count() == 1
    assert "idempotency key" in page.locator("table.sagas tbody").inner_text()
    page.fill('form.search input[name="q"]', "grace hopper")
    page.click("form.search button")
    page.wait_for_url("**q=grace+hopper")
    row = page.locator("table.sagas tbody tr")
    assert row.count() == 1
    assert ids["orphaned"] in row.inner_text()
    assert "context" in row.inner_text()
    page.screenshot(path=shots / "13-search-context.png", full_page=True)
    page.fill('form.search input[name="q"]', ids["shipment"][:7])
    page.click("form.search button")
    page.wait_for_url(f"**q={ids['shipment'][:7]}")
    found = page.locator("table.sagas tbody").inner_text()
    assert ids["shipment"] in found
    assert f"{ids['shipment']}/pay" in found
    page.fill('form.search input[name="q"]', CORRELATION)
    page.click("form.search button")
    page.wait_for_selector("p.conversation a")
    page.click("p.conversation a")
    page.wait_for_selector("table.events")
    assert page.locator("table.events tbody tr").count() == 3
    assert page.locator("#status").inner_text() == "compensated"
    page.screenshot(path=shots / "14-choreography.png", full_page=True)


def charts(page: Any, url: str, ids: dict[str, str], shots: Path) -> None:
    """The rolled-back trip: its three bookings side by side in time, their
    compensations after; the graph coloured by status. The shipment's graph
    links its sub-saga step to the child, which links back."""
    page.goto(f"{url}/sagas/{ids['compensated']}")
    page.wait_for_selector("svg#gantt")
    bookings = [
        page.locator(f"svg#gantt rect.bar.action >> nth={i}").bounding_box()
        for i in range(3)
    ]
    lanes = {round(box["y"]) for box in bookings}
    assert len(lanes) == 3  # a lane each
    assert max(b["x"] for b in bookings) < min(b["x"] + b["width"] for b in bookings)
    assert page.locator("svg#gantt rect.bar.compensation").count() == 2
    assert page.locator("svg#gantt rect.bar.action.failed").count() == 1
    graph = page.locator("svg#graph")
    assert graph.locator("g.node").count() == 5
    assert graph.locator('g.node.failed[data-step="book_hotel"]').count() == 1
    assert graph.locator('g.node.compensated[data-step="book_flight"]').count() == 1
    assert graph.locator('g.node.pending.pivot[data-step="confirm_trip"]').count() == 1
    assert graph.locator("path.edge").count() == 4  # 3 into confirm_trip, 1 out
    page.screenshot(path=shots / "15-charts.png", full_page=True)
    page.goto(f"{url}/sagas/{ids['shipment']}")
    page.click('svg#graph a g.node[data-step="pay"]')
    page.wait_for_url(f"**/sagas/{ids['shipment']}%2Fpay")
    assert "Sub-saga of" in page.locator("section.family").inner_text()
    assert page.locator("svg#graph g.node.succeeded").count() == 2
    page.screenshot(path=shots / "16-sub-saga.png", full_page=True)


def held_locks(page: Any, url: str, ids: dict[str, str], shots: Path) -> None:
    """The locks page lists who holds the room and who queues for it; the
    waiting saga's page links the key and its holder."""
    page.click("nav.sections >> text=locks")
    page.wait_for_url(f"{url}/locks")
    holders = page.locator("#lock-holders").inner_text()
    assert ROOM in holders
    assert ids["orphaned"] in holders
    assert ids["unclaimed"] in page.locator("#lock-waiters").inner_text()
    page.screenshot(path=shots / "17-locks.png", full_page=True)
    page.click(f'#lock-waiters a:text("{ids["unclaimed"]}")')
    page.wait_for_url(f"**/sagas/{ids['unclaimed']}")
    section = page.locator("section.saga-locks")
    assert "this saga" in section.inner_text()
    section.locator(f'a:text("{ids["orphaned"]}")').wait_for()
    section.screenshot(path=shots / "18-saga-locks.png")
    page.goto(f"{url}/locks")  # the holder died: an operator releases the room
    form = page.locator("section.release form")
    form.locator('input[name="token"]').fill(TOKEN)
    form.locator('input[name="operator"]').fill("maria")
    form.locator('input[name="reason"]').fill("its worker crashed; the guest waits")
    form.locator("button").click()
    page.wait_for_url("**/locks?prefix=*released=*")
    assert f"Released {ROOM}." in page.locator(".flash.ok").inner_text()
    assert "No key held." in page.locator("#lock-holders").inner_text()
    page.screenshot(path=shots / "19-released.png", full_page=True)


def test_operator_finds_and_reads_sagas_in_the_browser(tmp_path: Path) -> None:
    db = tmp_path / "reading.db"
    ids = asyncio.run(seed_reading(db))
    shots = artifacts()
    with browsing(db, tmp_path) as (server, page, watch):
        pages_and_orphans(page, server.url, ids, shots)
        orphan_page(page, server.url, ids, shots)
        search_box(page, server.url, ids, shots)
        charts(page, server.url, ids, shots)
        held_locks(page, server.url, ids, shots)
    assert watch.dialogs == []
    assert watch.errors == []  # no script error, nothing the CSP refused
