"""Commands sent without a reply wait, end to end: a worker and two
participants as ``sagakit`` processes, over RabbitMQ, on PostgreSQL.

* a participant that never finishes an undo sent fire and forget
  (``Remote(..., awaited=False)``) does not hold the rollback up;
* a participant that replies late to an action receives the action's
  ``on_timeout`` command, and its late reply changes nothing.

The sagas and services are in ``tests/e2e/unawaited_app.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagakit.adapters.store.postgres import PostgresStore
from sagakit.runtime import Orchestrator
from tests.conftest import delete_rabbitmq_queues, run_sync
from tests.e2e.processes import stop
from tests.e2e.test_create_order import query, wait_until
from tests.e2e.unawaited_app import PREFIX_VAR, Order, sagas

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.rabbitmq,
    pytest.mark.slow,
]

ROOT = Path(__file__).parents[2]
APP = "tests.e2e.unawaited_app"


class Services:
    """The worker and the participants of one test, on queues of its own."""

    def __init__(self, db: str, amqp: str, logs: Path) -> None:
        self.db, self.amqp, self.logs = db, amqp, logs
        self.prefix = f"ua-{uuid.uuid4().hex[:10]}."
        self.reply_queue = f"{self.prefix}replies"
        self.env = {**os.environ, "SAGAKIT_DATABASE_URL": db, PREFIX_VAR: self.prefix}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *command: str, banner: str) -> None:
        with (self.logs / f"{name}.log").open("wb") as sink:
            self.procs[name] = subprocess.Popen(
                [
                    *(sys.executable, "-m", "sagakit.cli.main", "--db", self.db),
                    *("--log-level", "INFO", *command),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env,
            )
        wait_until(
            f"{name} to start", lambda: self.alive(name) and banner in self.log(name)
        )

    def start_all(self) -> None:
        amqp = ("--transport", self.amqp)
        for name in ("kitchen", "accounting"):
            self.start(
                name,
                "participant",
                f"{APP}:{name}",
                *amqp,
                banner=f"participant {name} handling",
            )
        self.start(
            "worker",
            "worker",
            APP,
            *amqp,
            "--reply-queue",
            self.reply_queue,
            banner="worker ",
        )

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def alive(self, name: str) -> bool:
        code = self.procs[name].poll()
        if code is not None:
            pytest.fail(f"{name} exited with {code}:\n{self.log(name)[-3000:]}")
        return True

    def stop_all(self) -> None:
        stop(self.procs.values(), seconds=10)

    def queues(self) -> list[str]:
        names = [f"{self.prefix}{n}" for n in ("kitchen", "accounting")]
        names.append(self.reply_queue)
        return [f"sagakit.{n}{dlq}" for n in names for dlq in ("", ".dlq")]

    def submit(self, which: int, order: Order) -> str:
        """Commit a saga (0: undo_order, 1: slow_order) for the worker."""
        saga = sagas(self.prefix)[which]

        async def submit() -> str:
            store = await PostgresStore.connect(self.db, migrate=False, max_size=1)
            try:
                producer = Orchestrator(store, reply_queue=self.reply_queue)
                return await producer.submit(saga, order)
            finally:
                await store.close()

        return run_sync(submit())

    def status(self, saga_id: str) -> str:
        (row,) = query(
            self.db, "SELECT status FROM sagakit_saga WHERE saga_id = $1", saga_id
        )
        return str(row["status"])

    def wait_for_end(self, saga_id: str) -> str:
        wait_until(
            f"saga {saga_id} to end",
            lambda: (
                all(self.alive(n) for n in self.procs)
                and self.status(saga_id) not in ("running", "compensating")
            ),
        )
        return self.status(saga_id)

    def effects(self, saga_id: str) -> list[tuple[str, int]]:
        rows = query(
            self.db,
            "SELECT action, attempt FROM effects WHERE saga_id = $1 ORDER BY id",
            saga_id,
        )
        return [(r["action"], r["attempt"]) for r in rows]

    def history(self, saga_id: str) -> list[tuple[str, str | None, str]]:
        rows = query(
            self.db,
            "SELECT kind, step, outcome FROM sagakit_step_history "
            "WHERE saga_id = $1 ORDER BY id",
            saga_id,
        )
        return [(r["kind"], r["step"], r["outcome"]) for r in rows]


@pytest.fixture
def services(pg_url: str, rabbitmq_url: str, tmp_path: Path) -> Iterator[Services]:
    query(
        pg_url,
        "CREATE TABLE effects (id bigint GENERATED ALWAYS AS IDENTITY, "
        "saga_id text, action text, attempt integer)",
    )
    group = Services(pg_url, rabbitmq_url, tmp_path)
    try:
        group.start_all()
        yield group
    finally:
        group.stop_all()
        run_sync(delete_rabbitmq_queues(*group.queues()))


def test_a_participant_that_never_finishes_an_undo_does_not_block_the_rollback(
    services: Services,
) -> None:
    saga_id = services.submit(0, Order(order_id=1))
    assert services.wait_for_end(saga_id) == "compensated"
    compensation = [
        (step, outcome)
        for kind, step, outcome in services.history(saga_id)
        if kind == "compensation"
    ]
    assert compensation == [("create_ticket", "sent")]
    # the undo reached the kitchen, which is still at it
    wait_until(
        "the kitchen to get the undo",
        lambda: ("reject_ticket", 1) in services.effects(saga_id),
    )
    assert services.effects(saga_id) == [("create_ticket", 1), ("reject_ticket", 1)]


def test_a_participant_that_replies_late_receives_the_cancel(
    services: Services,
) -> None:
    saga_id = services.submit(1, Order(order_id=2, slow_seconds=3.0))
    assert services.wait_for_end(saga_id) == "compensated"
    (row,) = query(
        services.db, "SELECT state FROM sagakit_saga WHERE saga_id = $1", saga_id
    )
    assert '"ReplyTimeout"' in str(row["state"])
    history = services.history(saga_id)
    assert [(k, o) for k, s, o in history if s == "create_ticket"] == [
        ("action", "timed_out"),
        ("cancel", "sent"),
    ]
    # the cancel arrives while the ticket is still being made; the ticket's
    # late reply then finds a saga that has ended
    wait_until(
        "the late ticket",
        lambda: ("create_ticket", 1) in services.effects(saga_id),
    )
    assert services.effects(saga_id) == [("cancel_ticket", 1), ("create_ticket", 1)]
    wait_until(
        "the late reply to be dropped",
        lambda: any(
            "reply for a finished saga dropped" in line and saga_id in line
            for line in services.log("worker").splitlines()
        ),
    )
    assert services.history(saga_id) == history  # nothing changed after the end
