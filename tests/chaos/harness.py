"""The chaos tests' process supervisor, service restarts and outcome checks.

``Cluster`` starts the orchestrator workers and the participants of
``chaos_app`` through the ``sagakit`` CLI, each role under a name like
``worker-0`` or ``stock-1``. Like a process manager, ``supervise`` starts
again any process that exited on its own, and counts it; ``kill`` SIGKILLs
one and starts it again. Logs are kept per start, so the counts of what the
processes logged survive the kills.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sagakit.cli.common import POOL_ENV
from tests.chaos.chaos_app import FAIL_EVERY
from tests.conftest import run_sync

ROOT = Path(__file__).parents[2]
APP = "tests.chaos.chaos_app"
PARTICIPANTS = ("stock", "payment")
TERMINAL = ("succeeded", "compensated", "failed", "compensation_failed")

# (participant, step, kind) of each effect a saga should leave, by outcome
SUCCEEDED = {("reserve", "action"), ("charge", "action"), ("ship", "action")}
COMPENSATED = {
    ("reserve", "action"),
    ("charge", "action"),
    ("charge", "compensation"),
    ("reserve", "compensation"),
}

# what the processes log when something happened twice or had to be retried
LOGGED = {
    "command_duplicate": "duplicate command; resending the stored reply",
    "reply_duplicate": "duplicate reply dropped",
    "reply_stale": "late reply dropped",
    "reply_late": "reply for a finished saga dropped",
    "taken_over": "saga taken over",
    "requeued": "handler failed, message requeued",
    "dead_lettered": "message dead-lettered",
    "unacked": "message left unacknowledged",
    "settle_failed": "settling failed; message requeued",
    "reply_retry": "reply publish failed; retrying",
    "inbox_retry": "inbox unavailable; retrying",
    "save_retry": "save failed; retrying",
    "claim_retry": "claim failed; retrying",
    "relay_retry": "outbox relay failed; retrying",
    "publish_failed": "publish failed; retried after the hold",
    "renew_failed": "lease renewal failed",
    "deadline_retry": "deadline check failed",
    "internal_error": "saga stopped by an internal error",
    "traceback": "Traceback (most recent call last)",
}


_AWAY = ("shutting down", "starting up", "connection", "refused", "too many clients")


async def _fetch(url: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg  # noqa: PLC0415 - only the PostgreSQL tests need the driver

    conn = await asyncpg.connect(url, timeout=5)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def query(url: str, sql: str, *args: Any) -> list[Any]:
    """Rows of ``sql``; a server that is away (restarting) is waited for."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return run_sync(_fetch(url, sql, *args))
        except Exception as exc:  # asyncpg has no one class for "server away"
            text = str(exc).lower()
            away = isinstance(exc, OSError) or any(w in text for w in _AWAY)
            if not away or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def wait_until(what: str, check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:g}s waiting for {what}")
        time.sleep(0.2)


def submit(db: str, count: int, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", APP, "submit", db, str(count)],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]


@dataclass
class Proc:
    role: str  # "worker" or a participant's name
    popen: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)


DB_POOL = 4
"""Connections of a cluster process's store, unless ``$SAGAKIT_DB_POOL``
says otherwise."""


class Cluster:
    """The processes of one test run: names, restarts, kills and logs."""

    def __init__(
        self,
        db: str,
        amqp: str,
        logs: Path,
        *,
        app: str = APP,
        participants: tuple[str, ...] = PARTICIPANTS,
        routes: Callable[[str], tuple[str, str]] | None = None,
    ) -> None:
        self.db, self.amqp, self.logs = db, amqp, logs
        self.app, self.participants = app, participants
        # the database and broker URLs a process is given, by its name (the
        # Jepsen harness routes each process through a proxy of its own)
        self.routes = routes or (lambda name: (db, amqp))
        self.max_active = 300  # per worker
        self.prefix = f"chaos-{uuid.uuid4().hex[:10]}."
        self.reply_queue = f"{self.prefix}replies"
        self.procs: dict[str, Proc] = {}
        self.reaped: list[Proc] = []
        self.starts: collections.Counter[str] = collections.Counter()
        self.kills: collections.Counter[str] = collections.Counter()  # by role
        self.exits: collections.Counter[str] = collections.Counter()  # by name
        self.exit_codes: list[tuple[str, int]] = []
        self.env = {
            # each process's store opens at most as many connections (see
            # --db-pool): the server is shared with the other tests running
            POOL_ENV: str(DB_POOL),
            **os.environ,
            "SAGAKIT_DATABASE_URL": db,
            "CHAOS_QUEUE_PREFIX": self.prefix,
        }

    def start(self, name: str) -> None:
        role = name.rpartition("-")[0]
        db, amqp = self.routes(name)
        if role == "worker":
            command = [
                "worker",
                self.app,
                "--transport",
                amqp,
                "--reply-queue",
                self.reply_queue,
                "--lease",
                "3",
                "--max-active",
                str(self.max_active),
            ]
        else:
            command = ["participant", f"{self.app}:{role}", "--transport", amqp]
        self.starts[name] += 1
        log = self.logs / f"{name}.{self.starts[name]}.log"
        with log.open("wb") as sink:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sagakit.cli.main",
                    "--db",
                    db,
                    "--log-level",
                    "INFO",
                    *command,
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**self.env, "SAGAKIT_DATABASE_URL": db},
            )
        self.procs[name] = Proc(role, popen, log)

    def start_all(self, workers: int, instances: int) -> None:
        for role in self.participants:
            for i in range(instances):
                self.start(f"{role}-{i}")
        for i in range(workers):
            self.start(f"worker-{i}")
        for name, proc in self.procs.items():
            banner = "worker " if proc.role == "worker" else "participant "
            wait_until(
                f"{name} to start",
                lambda p=proc, b=banner: self._alive(p) and b in p.log.read_text(),  # type: ignore[misc]
                30,
            )

    def _alive(self, proc: Proc) -> bool:
        code = proc.popen.poll()
        if code is not None:
            pytest.fail(
                f"{proc.role} exited with {code}: {proc.log.read_text()[-3000:]}"
            )
        return True

    def supervise(self) -> list[str]:
        """Start again what exited on its own (a process manager's job)."""
        restarted = []
        for name, proc in list(self.procs.items()):
            code = proc.popen.poll()
            if code is None:
                continue
            self.exits[name] += 1
            self.exit_codes.append((name, code))
            self.reaped.append(proc)
            self.start(name)
            restarted.append(name)
        return restarted

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` and start it again at once."""
        proc = self.procs[name]
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGKILL)
            proc.popen.wait(10)
            self.kills[proc.role] += 1
        else:  # it died on its own first: a supervisor restart
            self.exits[name] += 1
            self.exit_codes.append((name, proc.popen.returncode))
        self.reaped.append(proc)
        self.start(name)

    def stop_all(self) -> None:
        """SIGTERM everything, SIGKILL what is left after 10 s; reap all."""
        running = list(self.procs.values())
        for proc in running:
            if proc.popen.poll() is None:
                proc.popen.terminate()
        for proc in running:
            try:
                proc.popen.wait(10)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(10)
        for proc in self.reaped:
            proc.popen.wait(10)

    def logs_text(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log"))
        )

    def logged(self) -> dict[str, int]:
        text = self.logs_text()
        return {key: n for key, line in LOGGED.items() if (n := text.count(line))}

    def queues(self) -> list[str]:
        names = [f"{self.prefix}{p}" for p in self.participants] + [self.reply_queue]
        return [f"sagakit.{n}{dlq}" for n in names for dlq in ("", ".dlq")]

    def dead_letters(self) -> dict[str, int]:
        from sagakit.adapters.transport.rabbitmq import RabbitTransport  # noqa: PLC0415

        async def count() -> dict[str, int]:
            transport = await RabbitTransport.connect(self.amqp)
            try:
                queues = [f"{self.prefix}{p}" for p in self.participants]
                queues.append(self.reply_queue)
                return {q: len(await transport.dead_letters(q)) for q in queues}
            finally:
                await transport.close()

        return run_sync(count())


# -- outcomes ----------------------------------------------------------------------


def statuses(db: str) -> collections.Counter[str]:
    rows = query(db, "SELECT status, count(*) FROM sagakit_saga GROUP BY status")
    return collections.Counter({r["status"]: r["count"] for r in rows})


def stuck(db: str, limit: int = 3) -> dict[str, list[tuple[Any, ...]]]:
    """History lines of a few unfinished sagas (for a failure message)."""
    rows = query(
        db,
        "SELECT h.saga_id, h.kind, h.step, h.attempt, h.outcome FROM "
        "sagakit_step_history h JOIN (SELECT saga_id FROM sagakit_saga WHERE "
        "status IN ('running', 'compensating') ORDER BY saga_id LIMIT $1) s "
        "USING (saga_id) ORDER BY h.id",
        limit,
    )
    found: dict[str, list[tuple[Any, ...]]] = collections.defaultdict(list)
    for r in rows:
        found[r["saga_id"]].append(tuple(r)[1:])
    return dict(found)


def all_terminal(db: str, count: int) -> bool:
    done = statuses(db)
    return sum(done[s] for s in TERMINAL) == count


@dataclass
class Report:
    statuses: collections.Counter[str]
    effects: int
    repeats: int
    repeats_by_step: collections.Counter[str]
    inbox: dict[str, int]


def check(db: str, count: int) -> Report:
    """Every saga ended as meant; each effect once, by its first command."""
    sagas = query(db, "SELECT saga_id, status, context FROM sagakit_saga")
    assert len(sagas) == count
    effects = query(db, "SELECT saga_id, step, kind, message_id FROM chaos.effects")
    by_saga: dict[str, set[tuple[str, str]]] = collections.defaultdict(set)
    for e in effects:
        kind = "a" if e["kind"] == "action" else "c"
        # attempt 1: no command was re-sent under a new id (no timeout, no retry)
        assert e["message_id"] == f"{e['saga_id']}.{e['step']}.{kind}1", dict(e)
        by_saga[e["saga_id"]].add((e["step"], e["kind"]))
    history = query(
        db,
        "SELECT saga_id, step, kind, outcome FROM sagakit_step_history "
        "WHERE kind IN ('action', 'compensation') ORDER BY id",
    )
    lines: dict[str, list[tuple[str, str, str]]] = collections.defaultdict(list)
    for h in history:
        lines[h["saga_id"]].append((h["kind"], h["step"], h["outcome"]))
    wrong = []
    for s in sagas:
        sid = s["saga_id"]
        index = int(sid.split("-")[1])
        fails = index % FAIL_EVERY == FAIL_EVERY - 1
        want = "compensated" if fails else "succeeded"
        expected = COMPENSATED if fails else SUCCEEDED
        done = [(k, st) for k, st, o in lines[sid] if o == "succeeded"]
        order = (
            [
                ("action", "reserve"),
                ("action", "charge"),
                ("compensation", "charge"),
                ("compensation", "reserve"),
            ]
            if fails
            else [("action", "reserve"), ("action", "charge"), ("action", "ship")]
        )
        if s["status"] != want or by_saga[sid] != expected or done != order:
            wrong.append((sid, s["status"], sorted(by_saga[sid]), lines[sid]))
    assert not wrong, f"{len(wrong)} sagas ended wrong, e.g. {wrong[:5]}"
    repeats = query(db, "SELECT step, kind FROM chaos.repeats")
    inbox = query(db, "SELECT consumer, count(*) FROM sagakit_inbox GROUP BY consumer")
    return Report(
        statuses=statuses(db),
        effects=len(effects),
        repeats=len(repeats),
        repeats_by_step=collections.Counter(
            f"{r['step']}:{r['kind']}" for r in repeats
        ),
        inbox={r["consumer"]: r["count"] for r in inbox},
    )


def seconds_since(mark: float) -> str:
    return f"{time.monotonic() - mark:.1f}s"
