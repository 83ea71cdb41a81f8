"""Replies routed to the process that drives their saga, end to end:
orchestrator, ``sagakit worker`` and ``sagakit participant`` processes over
RabbitMQ, on one SQLite file.

* two orchestrator processes serve on the same reply queue and run sagas
  at the same time: every reply reaches the process that runs its saga,
  none the other (through a shared queue alone, about half would);
* a reply that reaches the queue of a worker SIGKILLed meanwhile is
  forwarded to the shared reply queue by the worker that recovers the saga,
  which finishes it; the dead worker's queue is gone.

The saga and the service are in ``tests/e2e/reply_app.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagakit import Orchestrator, SQLiteStore
from sagakit.adapters.transport.amqp_replies import owner_queue
from sagakit.runtime.owners import reply_key
from tests.conftest import delete_rabbitmq_queues, rabbitmq_ready, run_sync
from tests.e2e.processes import stop
from tests.e2e.reply_app import (
    EFFECTS_VAR,
    GATE_VAR,
    PREFIX_VAR,
    Job,
    routed_saga,
)
from tests.e2e.test_create_order import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
APP = "tests.e2e.reply_app"


class Services:
    """The workers and the participant of one test, on queues of its own."""

    def __init__(self, amqp: str, tmp: Path) -> None:
        self.amqp, self.tmp = amqp, tmp
        self.db = tmp / "sagas.db"
        self.prefix = f"rr-{uuid.uuid4().hex[:10]}."
        self.reply_queue = f"{self.prefix}replies"
        self.effects = tmp / "effects.txt"
        self.gate = tmp / "gate"
        self.env = {
            **os.environ,
            PREFIX_VAR: self.prefix,
            EFFECTS_VAR: str(self.effects),
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.owner_queues: list[str] = []  # deleted after, whatever happens
        asyncio.run(SQLiteStore(self.db).close())  # migrated before any process

    def start(self, name: str, *command: str, gated: bool = False) -> None:
        env = {**self.env, GATE_VAR: str(self.gate)} if gated else self.env
        with (self.tmp / f"{name}.log").open("wb") as sink:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "sagakit.cli.main", *command],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
            )

    def participant(self, *, gated: bool = False) -> None:
        self.start(
            "desk",
            *("--db", str(self.tmp / "desk.db"), "participant", f"{APP}:desk"),
            *("--transport", self.amqp),
            gated=gated,
        )
        wait_until("the desk to start", lambda: "handling" in self.log("desk"))

    def worker(self, name: str) -> str:
        """Start a worker; its id."""
        self.start(
            name,
            *("--db", str(self.db), "worker", APP, "--transport", self.amqp),
            *("--reply-queue", self.reply_queue),
        )
        wait_until(f"{name} to start", lambda: " running routed" in self.log(name))
        found = re.search(r"worker (\S+) running", self.log(name))
        assert found is not None
        return found.group(1)

    def orchestrator(
        self, name: str, *, count: int
    ) -> tuple[subprocess.Popen[bytes], str]:
        """An orchestrator process of ``reply_app`` (see there); its worker id."""
        paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        with (self.tmp / f"{name}.log").open("wb") as sink:
            proc = subprocess.Popen(
                [
                    *(sys.executable, str(ROOT / "tests" / "e2e" / "reply_app.py")),
                    *(str(self.db), self.amqp, self.reply_queue, str(count)),
                    str(self.tmp),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**self.env, "PYTHONPATH": os.pathsep.join(paths)},
            )
        self.procs[name] = proc
        wait_until(f"{name} to serve", lambda: "serving as" in self.log(name))
        found = re.search(r"serving as (\S+)", self.log(name))
        assert found is not None
        return proc, found.group(1)

    def log(self, name: str) -> str:
        self.alive(name)
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self, name: str) -> None:
        code = self.procs[name].poll()
        if code is not None and code != -signal.SIGKILL:
            text = (self.tmp / f"{name}.log").read_text(errors="replace")
            pytest.fail(f"{name} exited with {code}:\n{text[-3000:]}")

    def submit(self, n: int) -> str:
        async def submit() -> str:
            store = SQLiteStore(self.db)
            try:
                producer = Orchestrator(store, reply_queue=self.reply_queue)
                return await producer.submit(routed_saga(self.prefix), Job(n=n))
            finally:
                await store.close()

        return run_sync(submit())

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db, timeout=10) as conn:
            return conn.execute(sql, args).fetchall()

    def statuses(self) -> dict[str, str]:
        return dict(self.rows("SELECT saga_id, status FROM sagakit_saga"))  # type: ignore[arg-type]

    def handled(self) -> list[tuple[str, str]]:
        lines = self.effects.read_text().splitlines() if self.effects.exists() else []
        return [(line.split()[0], line.split()[1]) for line in lines]

    def stop_all(self) -> None:
        stop(self.procs.values())

    def queues(self) -> list[str]:
        names = [f"{self.prefix}desk", self.reply_queue]
        found = [f"sagakit.{n}{dlq}" for n in names for dlq in ("", ".dlq")]
        return found + self.owner_queues


@pytest.fixture
def services(rabbitmq_url: str, tmp_path: Path) -> Iterator[Services]:
    group = Services(rabbitmq_url, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
        run_sync(delete_rabbitmq_queues(*group.queues()))


def test_every_reply_reaches_the_process_that_runs_its_saga(
    services: Services,
) -> None:
    services.participant()
    runners = [services.orchestrator(f"runner{i}", count=10) for i in range(2)]
    (services.tmp / "go").touch()
    outs = [services.tmp / f"{proc.pid}.out" for proc, _ in runners]
    wait_until("both to run their sagas", lambda: all(p.exists() for p in outs))
    (services.tmp / "stop").touch()
    for proc, _ in runners:
        assert proc.wait(30) == 0
    owners = dict(services.rows("SELECT saga_id, owner FROM sagakit_saga"))
    taken = services.rows(
        "SELECT saga_id FROM sagakit_step_history WHERE kind = 'saga' "
        "AND outcome NOT IN ('started', 'succeeded')"
    )
    assert taken == []  # none claimed or resumed elsewhere
    for (_, worker), out in zip(runners, outs, strict=True):
        ran = dict(line.split() for line in out.read_text().splitlines())
        assert list(ran.values()) == ["succeeded"] * 10
        # each saga's last transition (its second reply) was committed by
        # the process that ran it: no reply went to the other one
        assert {owners[i] for i in ran} == {worker}
    assert len(services.handled()) == 40


def test_a_reply_for_a_killed_worker_is_applied_by_the_one_that_recovers(
    services: Services,
) -> None:
    services.participant(gated=True)
    dead = services.worker("a")
    saga_id = services.submit(1)
    # the first command was committed by the producer (no worker's key); the
    # second, by the worker: its reply is for that worker's own queue
    wait_until(
        "the desk to get the second command", lambda: len(services.handled()) == 2
    )
    os.kill(services.procs["a"].pid, signal.SIGKILL)
    services.procs["a"].wait(10)

    # the reply goes to the dead worker's own queue, and waits there
    queue = owner_queue(f"sagakit.{services.reply_queue}", reply_key(dead))
    services.owner_queues.append(queue)
    services.gate.touch()
    wait_until(
        "the reply to reach the dead worker's queue",
        lambda: run_sync(rabbitmq_ready(queue)) == 1,
    )

    services.worker("b")  # finds "a" dead: forwards its queue, claims the saga
    wait_until(
        "the saga to succeed",
        lambda: services.statuses()[saga_id] == "succeeded",
    )
    assert services.handled() == [(saga_id, "first"), (saga_id, "second")]
    # forwarded to the shared queue by the worker that found it dead (its
    # expiry would have left the queue in place), then deleted
    assert run_sync(rabbitmq_ready(queue)) is None
