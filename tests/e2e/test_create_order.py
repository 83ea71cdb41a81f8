"""The CreateOrder example as four processes: the order service (a FastAPI
app under uvicorn, running a worker) and the consumer, kitchen and
accounting participants, over RabbitMQ (and, for the killed kitchen, NATS
JetStream), on PostgreSQL.

Each test starts its own processes (uvicorn, the ``sagakit`` CLI), on a fresh
database and under a queue prefix of its own, places orders through the
order service's HTTP API (and one with ``place_order``), and counts the
effects the services recorded (``<schema>.effects``) to show that each
happened once.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sagakit.adapters.transport import open_transport
from sagakit.ports.store import HistoryEntry, SagaRecord
from tests.conftest import (
    delete_nats_streams,
    delete_rabbitmq_queues,
    free_ports,
    run_sync,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.rabbitmq,
    pytest.mark.slow,
]

ROOT = Path(__file__).parents[2]
PARTICIPANTS = {
    "consumer": "examples.create_order.consumer_service:consumers",
    "kitchen": "examples.create_order.kitchen_service:kitchen",
    "accounting": "examples.create_order.accounting_service:accounting",
}
ORDER_SERVICE = "examples.create_order.order_service:app"
SCHEMAS = ("orders", "consumers", "kitchen", "accounting")
WAIT = 30.0  # seconds any one wait may take

Effects = collections.Counter[tuple[str, str]]  # (service, action) -> count

APPROVED_EFFECTS: Effects = collections.Counter(
    {
        ("order", "create_pending"): 1,
        ("consumer", "verify"): 1,
        ("kitchen", "create_ticket"): 1,
        ("accounting", "authorize"): 1,
        ("kitchen", "approve_ticket"): 1,
        ("order", "approved"): 1,
    }
)


async def _fetch(url: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg  # noqa: PLC0415 - only the PostgreSQL tests need the driver

    conn = await asyncpg.connect(url, timeout=5)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def query(url: str, sql: str, *args: Any) -> list[Any]:
    return run_sync(_fetch(url, sql, *args))


def wait_until(what: str, check: Callable[[], bool], seconds: float = WAIT) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:g}s waiting for {what}")
        time.sleep(0.05)


class Cluster:
    """The services of one test: processes, their logs, their queues."""

    def __init__(self, db: str, broker: str, logs: Path) -> None:
        self.db, self.broker, self.logs = db, broker, logs
        self.prefix = f"co-{uuid.uuid4().hex[:10]}."
        self.reply_queue = f"{self.prefix}replies"
        (self.port,) = free_ports(1)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.exited: list[subprocess.Popen[bytes]] = []
        self.starts: collections.Counter[str] = collections.Counter()
        self.env = {
            **os.environ,
            "SAGAKIT_DATABASE_URL": db,
            "CREATE_ORDER_QUEUE_PREFIX": self.prefix,
            "SAGAKIT_TRANSPORT_URL": broker,
        }

    # -- processes ---------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}-{self.starts[name]}.log"

    def log(self, name: str) -> str:
        """What the current process of ``name`` logged so far."""
        return self.log_path(name).read_text(errors="replace")

    def start(self, name: str, *, env: dict[str, str] | None = None) -> None:
        if name == "order":  # the app's transport: $SAGAKIT_TRANSPORT_URL
            command = ["uvicorn", ORDER_SERVICE, "--port", str(self.port)]
        else:
            command = [
                "sagakit.cli.main",
                "--db",
                self.db,
                "--log-level",
                "INFO",
                "participant",
                PARTICIPANTS[name],
                "--transport",
                self.broker,
            ]
        self.starts[name] += 1
        with self.log_path(name).open("wb") as sink:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", *command],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**self.env, **(env or {})},
            )

    def wait_ready(self, *names: str) -> None:
        """Until each process says it consumes its queue (or fail with its log)."""
        for name in names:
            banner = (
                "Application startup complete."
                if name == "order"
                else f"participant {name} handling"
            )
            self.wait_for_log(name, banner)

    def start_all(self, **env: dict[str, str]) -> None:
        for name in ("consumer", "kitchen", "accounting", "order"):
            self.start(name, env=env.get(name))
        self.wait_ready("consumer", "kitchen", "accounting", "order")

    def alive(self, name: str) -> bool:
        """True; fails the test with the log of a process that exited."""
        code = self.procs[name].poll()
        if code is not None:
            pytest.fail(f"{name} exited with {code}:\n{self.log(name)[-3000:]}")
        return True

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        self.exited.append(proc)

    def stop_all(self) -> None:
        """SIGTERM everything, then SIGKILL what is still there; reap all."""
        running = list(self.procs.values())
        for proc in running:
            if proc.poll() is None:
                proc.terminate()
        for proc in running:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for proc in self.exited:
            proc.wait(10)

    def queues(self) -> list[str]:
        names = [f"{self.prefix}{p}" for p in PARTICIPANTS] + [self.reply_queue]
        return [f"sagakit.{n}{dlq}" for n in names for dlq in ("", ".dlq")]

    # -- orders ------------------------------------------------------------

    def place(self, consumer_id: str, amount: int) -> str:
        """An order placed through the order service's API; its id."""
        order = {"consumer_id": consumer_id, "amount": amount}
        url = f"http://127.0.0.1:{self.port}/orders"
        placed = httpx.post(url, json=order, timeout=WAIT)
        assert placed.status_code == 202, placed.text
        order_id: str = placed.json()["order_id"]
        again = httpx.post(url, json={**order, "order_id": order_id}, timeout=WAIT)
        assert again.json() == {"order_id": order_id}  # one order per id
        return order_id

    def order(self, order_id: str) -> dict[str, Any]:
        """``GET /orders/{id}``: the saga and the order row's status."""
        got = httpx.get(f"http://127.0.0.1:{self.port}/orders/{order_id}", timeout=WAIT)
        assert got.is_success, got.text
        found: dict[str, Any] = got.json()
        return found

    def place_with_cli(self, consumer_id: str, amount: int) -> str:
        """An order committed by ``place_order`` (the app's worker claims it)."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "examples.create_order.place_order",
                "--consumer-id",
                consumer_id,
                "--amount",
                str(amount),
            ],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
            cwd=ROOT,
            env=self.env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip()

    def saga(self, saga_id: str) -> tuple[str, int]:
        """Status and version, as stored."""
        (row,) = query(
            self.db,
            "SELECT status, version FROM sagakit_saga WHERE saga_id = $1",
            saga_id,
        )
        return row["status"], row["version"]

    def wait_for_end(self, saga_id: str) -> str:
        def ended() -> bool:
            return all(self.alive(n) for n in self.procs) and self.saga(saga_id)[
                0
            ] not in ("running", "compensating")

        wait_until(f"saga {saga_id} to end", ended)
        return self.saga(saga_id)[0]

    def wait_for_log(self, name: str, text: str) -> None:
        wait_until(
            f"{text!r} in the {name} log",
            lambda: self.alive(name) and text in self.log(name),
        )

    def effects(self, saga_id: str) -> Effects:
        """What the services did for this saga (schemas a service never
        created, because it never wrote, count as nothing)."""
        found: Effects = collections.Counter()
        for schema in SCHEMAS:
            table = f"{schema}.effects"
            (exists,) = query(self.db, "SELECT to_regclass($1) IS NOT NULL", table)
            if not exists[0]:
                continue
            rows = query(
                self.db,
                f"SELECT service, action FROM {table} WHERE saga_id = $1",  # noqa: S608 - fixed names
                saga_id,
            )
            found.update((r["service"], r["action"]) for r in rows)
        return found

    def tickets(self, saga_id: str) -> int:
        (exists,) = query(self.db, "SELECT to_regclass('kitchen.tickets') IS NOT NULL")
        if not exists[0]:
            return 0
        (row,) = query(
            self.db, "SELECT count(*) FROM kitchen.tickets WHERE saga_id = $1", saga_id
        )
        return int(row[0])

    def order_status(self, order_id: str) -> str:
        (row,) = query(
            self.db, "SELECT status FROM orders.orders WHERE order_id = $1", order_id
        )
        return str(row["status"])

    def stored(self, saga_id: str) -> tuple[SagaRecord, list[HistoryEntry]]:
        """The saga's record and history lines, through the store."""
        from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415

        async def read() -> tuple[SagaRecord, list[HistoryEntry]]:
            store = await PostgresStore.connect(self.db, migrate=False, max_size=1)
            try:
                return await store.get(saga_id), await store.history(saga_id)
            finally:
                await store.close()

        return run_sync(read())

    def history(self, saga_id: str) -> list[tuple[str, str | None, int, str]]:
        """(kind, step, attempt, outcome) per history line."""
        lines = self.stored(saga_id)[1]
        return [(h.kind, h.step, h.attempt, h.outcome) for h in lines]

    def results(self, saga_id: str) -> dict[str, Any]:
        """The result recorded per step."""
        return self.stored(saga_id)[0].state.results

    # -- the broker --------------------------------------------------------

    def publish_raw(self, queue: str, body: bytes) -> None:
        async def publish() -> None:
            transport = await open_transport(self.broker)
            try:
                await transport.publish_raw(queue, body)
            finally:
                await transport.close()

        run_sync(publish())

    def dead_letters(self) -> dict[str, int]:
        async def count() -> dict[str, int]:
            transport = await open_transport(self.broker)
            try:
                queues = [f"{self.prefix}{p}" for p in PARTICIPANTS]
                queues.append(self.reply_queue)
                return {q: len(await transport.dead_letters(q)) for q in queues}
            finally:
                await transport.close()

        return run_sync(count())


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path
) -> Iterator[Cluster]:
    """The services over RabbitMQ, or over NATS JetStream when a test asks
    (``indirect`` parametrization with ``"nats"``; a short ``ack_wait`` so a
    killed service's messages come back soon)."""
    broker = getattr(request, "param", "rabbitmq")
    if broker == "nats":
        url = f"{request.getfixturevalue('nats_url')}?ack_wait=2"
    else:
        url = request.getfixturevalue("rabbitmq_url")
    group = Cluster(pg_url, url, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
        if broker == "nats":
            from sagakit.adapters.transport.nats import token  # noqa: PLC0415

            run_sync(delete_nats_streams(f"sagakit_{token(group.prefix)}"))
        else:
            run_sync(delete_rabbitmq_queues(*group.queues()))


BROKERS = pytest.mark.parametrize(
    "cluster",
    ["rabbitmq", pytest.param("nats", marks=pytest.mark.nats)],
    indirect=True,
)
"""Run a test over each broker (on NATS only the killed kitchen: it covers
the happy path too and keeps the suite short)."""


def actions(history: list[tuple[str, str | None, int, str]], kind: str) -> list[Any]:
    return [(step, outcome) for k, step, _, outcome in history if k == kind]


def test_order_is_approved_with_each_effect_once(cluster: Cluster) -> None:
    cluster.start_all()
    saga_id = cluster.place("alice", 25)

    assert cluster.wait_for_end(saga_id) == "succeeded"
    assert cluster.order_status(saga_id) == "APPROVED"
    shown = cluster.order(saga_id)
    assert (shown["status"], shown["saga"]["status"]) == ("APPROVED", "succeeded")
    assert cluster.effects(saga_id) == APPROVED_EFFECTS
    history = cluster.history(saga_id)
    assert actions(history, "action") == [
        (step, "succeeded")
        for step in (
            "create_pending_order",
            "verify_consumer",
            "create_ticket",
            "authorize_card",
            "approve_ticket",
            "approve_order",
        )
    ]
    assert actions(history, "compensation") == []
    # results flowed between the steps: the kitchen approved the ticket its
    # reply to create_ticket named, and accounting authorized the amount of
    # the order as the order service stored it
    (ticket,) = query(
        cluster.db,
        "SELECT ticket_id, status FROM kitchen.tickets WHERE saga_id = $1",
        saga_id,
    )
    assert ticket["status"] == "APPROVED"
    results = cluster.results(saga_id)
    assert results["create_ticket"] == {"ticket_id": ticket["ticket_id"]}
    assert results["approve_ticket"] == {"ticket_id": ticket["ticket_id"]}
    assert results["create_pending_order"] == {
        "order_id": saga_id,
        "consumer_id": "alice",
        "amount": 25,
        "status": "PENDING",
    }
    (authorized,) = query(
        cluster.db,
        "SELECT amount FROM accounting.authorizations WHERE saga_id = $1",
        saga_id,
    )
    assert authorized["amount"] == 25


def test_declined_card_cancels_the_ticket_and_rejects_the_order(
    cluster: Cluster,
) -> None:
    cluster.start_all()
    saga_id = cluster.place("bob", 5000)  # over the card limit of 1000

    assert cluster.wait_for_end(saga_id) == "compensated"
    assert cluster.order_status(saga_id) == "REJECTED"
    shown = cluster.order(saga_id)["saga"]
    assert (shown["status"], shown["failed_step"]) == ("compensated", "authorize_card")
    assert "card declined" in shown["error"]
    (ticket,) = query(
        cluster.db, "SELECT status FROM kitchen.tickets WHERE saga_id = $1", saga_id
    )
    assert ticket["status"] == "CANCELLED"
    assert cluster.effects(saga_id) == collections.Counter(
        {
            ("order", "create_pending"): 1,
            ("consumer", "verify"): 1,
            ("kitchen", "create_ticket"): 1,
            ("kitchen", "cancel_ticket"): 1,
            ("order", "rejected"): 1,
        }
    )
    history = cluster.history(saga_id)
    assert ("authorize_card", "failed") in actions(history, "action")
    # undone in reverse order; verify_consumer has nothing to undo
    assert actions(history, "compensation") == [
        ("create_ticket", "succeeded"),
        ("create_pending_order", "succeeded"),
    ]
    (error,) = query(
        cluster.db,
        "SELECT error FROM sagakit_step_history WHERE saga_id = $1 "
        "AND step = 'authorize_card' AND outcome = 'failed'",
        saga_id,
    )
    assert "card declined" in error["error"]

    # a suspended consumer is turned away before the kitchen hears of it
    turned_away = cluster.place_with_cli("mallory", 10)
    assert cluster.wait_for_end(turned_away) == "compensated"
    assert cluster.order_status(turned_away) == "REJECTED"
    assert cluster.tickets(turned_away) == 0
    assert cluster.effects(turned_away) == collections.Counter(
        {("order", "create_pending"): 1, ("order", "rejected"): 1}
    )


@BROKERS
def test_kitchen_killed_mid_command_creates_the_ticket_once(cluster: Cluster) -> None:
    slow = {"CREATE_ORDER_KITCHEN_DELAY": "create_ticket=60"}
    cluster.start_all(kitchen=slow)
    saga_id = cluster.place("alice", 40)

    cluster.wait_for_log(
        "kitchen", f"kitchen is slow action=create_ticket saga_id={saga_id}"
    )
    cluster.kill("kitchen")  # mid-command: the command is not acknowledged
    assert cluster.tickets(saga_id) == 0
    cluster.start("kitchen")  # no delay this time
    cluster.wait_ready("kitchen")

    assert cluster.wait_for_end(saga_id) == "succeeded"
    assert cluster.tickets(saga_id) == 1
    assert cluster.effects(saga_id) == APPROVED_EFFECTS
    # the broker redelivered the same command: no retry, no timeout
    ticket_lines = [
        (attempt, outcome)
        for kind, step, attempt, outcome in cluster.history(saga_id)
        if kind == "action" and step == "create_ticket"
    ]
    assert ticket_lines == [(1, "succeeded")]
    assert cluster.order_status(saga_id) == "APPROVED"


def test_duplicated_reply_changes_nothing(cluster: Cluster) -> None:
    slow = {"CREATE_ORDER_KITCHEN_DELAY": "approve_ticket=4"}
    cluster.start_all(kitchen=slow)
    saga_id = cluster.place("alice", 60)
    cluster.wait_for_log("kitchen", f"action=approve_ticket saga_id={saga_id}")

    # the kitchen's reply to create_ticket, applied long ago, comes again
    (stored,) = query(
        cluster.db,
        "SELECT reply FROM sagakit_inbox WHERE consumer = 'kitchen' "
        "AND message_id = $1",
        f"{saga_id}.create_ticket.a1",
    )
    reply = bytes(stored["reply"])
    before = cluster.saga(saga_id)
    assert before[0] == "running"
    cluster.publish_raw(cluster.reply_queue, reply)
    cluster.wait_for_log("order", f"action=reply_stale saga_id={saga_id}")
    assert cluster.saga(saga_id) == before

    assert cluster.wait_for_end(saga_id) == "succeeded"
    ended = cluster.saga(saga_id)
    cluster.publish_raw(cluster.reply_queue, reply)  # and once more, after the end
    cluster.wait_for_log(
        "order",
        f"reply for a finished saga dropped action=reply_late saga_id={saga_id}",
    )
    assert cluster.saga(saga_id) == ended
    assert cluster.effects(saga_id) == APPROVED_EFFECTS
    assert cluster.dead_letters() == dict.fromkeys(
        [*(f"{cluster.prefix}{p}" for p in PARTICIPANTS), cluster.reply_queue], 0
    )
