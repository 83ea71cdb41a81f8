"""examples/flask_celery as three processes: the Flask app (``flask run``),
a ``sagakit worker`` running the saga over Celery's wire format, and a real
``celery worker`` running the tasks, with RabbitMQ as Celery's broker and
PostgreSQL as the store.

Orders go in through the Flask API; what the Celery tasks did is read from
their ledger (a SQLite file of the test's own), so each effect is counted.
Each test gets a fresh database and queue names of its own; every process
is reaped and the queues deleted.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import delete_rabbitmq_queues, free_ports, run_sync
from tests.e2e.processes import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.celery,
    pytest.mark.postgres,
    pytest.mark.rabbitmq,
    pytest.mark.slow,
]

ROOT = Path(__file__).parents[2]
WAIT = 30.0  # seconds any one wait may take


class Shop:
    """The three processes of one test, their logs and their queues."""

    def __init__(self, db: str, amqp: str, logs: Path) -> None:
        self.logs = logs
        self.prefix = f"fc-{uuid.uuid4().hex[:10]}."
        (self.port,) = free_ports(1)
        self.ledger = logs / "ledger.db"
        self.env = {
            **os.environ,
            "SAGAKIT_DATABASE_URL": db,
            "CELERY_BROKER_URL": amqp,
            "FLASK_CELERY_QUEUE_PREFIX": self.prefix,
            "FLASK_CELERY_LEDGER": str(self.ledger),
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        self.amqp = amqp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        stock, payment = f"{self.prefix}stock", f"{self.prefix}payment"
        commands = {
            "celery": [
                "celery",
                "-A",
                "examples.flask_celery.tasks",
                "worker",
                "--pool=solo",
                "-Q",
                f"{stock},{payment}",
                "-n",
                f"{self.prefix}shop@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
            ],
            "worker": [
                "sagakit.cli.main",
                "--log-level",
                "INFO",
                "worker",
                "examples.flask_celery.orders",
                "--transport",
                f"celery+{self.amqp}",
                "--reply-queue",
                f"{self.prefix}replies",
            ],
            "web": [
                "flask",
                "--app",
                "examples.flask_celery.web",
                "run",
                "--port",
                str(self.port),
            ],
        }
        for name, command in commands.items():
            with (self.logs / f"{name}.log").open("wb") as sink:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", *command],
                    cwd=ROOT,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group
                )
        self.wait_for_log("celery", "ready.")
        self.wait_for_log("worker", "worker started")
        wait_until("the Flask app", self.serving)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def alive(self) -> bool:
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                pytest.fail(f"{name} exited with {code}:\n{self.log(name)[-3000:]}")
        return True

    def wait_for_log(self, name: str, text: str) -> None:
        wait_until(
            f"{text!r} in the {name} log",
            lambda: self.alive() and text in self.log(name),
        )

    def serving(self) -> bool:
        self.alive()
        try:
            return httpx.get(f"{self.url}/health", timeout=1).is_success
        except httpx.HTTPError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM every process group (SIGKILL what stays), and reap."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(15)

    def queues(self) -> list[str]:
        names = [f"{self.prefix}{q}" for q in ("stock", "payment", "replies")]
        return [*names, *(f"{n}.dlq" for n in names)]

    # -- the shop's API and ledger ---------------------------------------------

    def order(self, order_id: str, amount: int) -> str:
        body = {"order_id": order_id, "item": "tea", "quantity": 2, "amount": amount}
        placed = httpx.post(f"{self.url}/orders", json=body, timeout=WAIT)
        assert placed.status_code == 202, placed.text
        return str(placed.json()["order_id"])

    def outcome(self, order_id: str) -> dict[str, Any]:
        """The order's saga once it ended (GET /orders/<id> until then)."""
        shown: dict[str, Any] = {}

        def ended() -> bool:
            nonlocal shown
            self.alive()
            shown = httpx.get(f"{self.url}/orders/{order_id}", timeout=WAIT).json()
            return shown["status"] not in ("running", "compensating")

        wait_until(f"order {order_id} to end", ended)
        return shown

    def done(self, order_id: str) -> list[str]:
        """What the Celery tasks recorded for the order, in order."""
        with closing(sqlite3.connect(self.ledger)) as db:
            rows = db.execute(
                "SELECT action FROM ledger WHERE saga_id = ? ORDER BY rowid",
                (order_id,),
            )
            return [action for (action,) in rows]


@pytest.fixture
def shop(pg_url: str, rabbitmq_url: str, tmp_path: Path) -> Iterator[Shop]:
    pytest.importorskip("celery")
    pytest.importorskip("flask")
    found = Shop(pg_url, rabbitmq_url, tmp_path)
    try:
        found.start()
        yield found
    finally:
        found.stop()
        run_sync(delete_rabbitmq_queues(*found.queues(), exchanges=found.queues()))


def test_orders_run_through_flask_and_celery_and_a_declined_card_compensates(
    shop: Shop,
) -> None:
    assert shop.order("A-1", 25) == "A-1"
    assert shop.order("A-1", 25) == "A-1"  # the same order again: one saga
    assert shop.outcome("A-1") == {
        "order_id": "A-1",
        "status": "succeeded",
        "results": {
            "reserve_stock": {"reservation_id": "R-A-1"},
            "charge_card": {"payment_id": "P-A-1"},
        },
        "failed_step": None,
        "error": None,
    }
    assert shop.done("A-1") == ["reserve", "charge"]

    shop.order("B-2", 5000)  # over the card limit
    declined = shop.outcome("B-2")
    assert (declined["status"], declined["failed_step"]) == (
        "compensated",
        "charge_card",
    )
    assert declined["error"] == "card declined: 5000 is over the limit of 1000"
    assert shop.done("B-2") == ["reserve", "release"]

    missing = httpx.get(f"{shop.url}/orders/nope", timeout=WAIT)
    assert missing.status_code == 404
    bad = httpx.post(f"{shop.url}/orders", json={"order_id": "C"}, timeout=WAIT)
    assert bad.status_code == 400
    assert {e["loc"][0] for e in bad.json()["detail"]} == {"item", "quantity", "amount"}
