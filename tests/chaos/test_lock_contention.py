"""Semantic locks under contention, with worker processes SIGKILLed.

Sagas of ``lock_app`` contend for three hot keys in two steps each, on one
database (PostgreSQL, then MySQL), driven by two ``sagakit worker`` processes that are
killed at random and started again. However the kills fall: no two sagas
ever hold one key at once (the steps' rows, stamped by the database clock,
never interleave between two holders of a key), every saga ends (none waits
forever: deadlocks are broken, a dead holder's sagas are resumed
elsewhere), every lock is released at the end, and a saga that did not
succeed either was meant to fail or lost a lock (a deadlock, or a busy key
in ``mode="fail"``). ``LOCK_CHAOS_SAGAS`` sagas (120; ``make chaos``: 1000)
and ``LOCK_CHAOS_KILLS`` kills (4; 12).

A saga that holds a hot key runs its steps while the others wait for it, so
kill after kill may find its step in flight: at the third the worker parks
it as poison (``max_crash_attempts``), paused with its keys, and every saga
queued behind them waits. The test then does what an operator does once
the step is known to be sound: ``sagakit unpause`` it, once a second, and
the checks above hold through the unpause.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.lock_app import FAIL_EVERY, plan, saga_id
from tests.conftest import BACKENDS, SERVER_URLS, run_sync
from tests.e2e import effects_table

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

ROOT = Path(__file__).parents[2]
APP = "tests.chaos.lock_app"
DEADLINE = float(os.environ.get("LOCK_CHAOS_DEADLINE", "600"))
MAX_CRASHES = int(os.environ.get("LOCK_CHAOS_MAX_CRASHES", "3"))
"""The workers' ``--max-crash-attempts`` (3, their default; 1 parks a saga
at every kill that finds its step in flight, to exercise the unpause)."""
LOCK_ERRORS = {"LockDeadlock", "LockUnavailable"}
KILL_GAP = 0.5  # seconds between two kills at least


class Workers:
    """``sagakit worker`` processes on one database, killed and restarted."""

    def __init__(self, db: str, logs: Path) -> None:
        self.db, self.logs = db, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: Counter[str] = Counter()

    def start(self, name: str) -> None:
        self.starts[name] += 1
        log = self.logs / f"{name}.{self.starts[name]}.log"
        with log.open("wb") as sink:
            self.procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "sagakit.cli.main", "--db", self.db),
                    *("--log-level", "WARNING", "worker", APP),
                    *("--lease", "5", "--max-active", "400"),
                    *("--max-crash-attempts", str(MAX_CRASHES)),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "SAGAKIT_DATABASE_URL": self.db},
            )

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(10)
        self.start(name)

    def supervise(self) -> None:
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                self.start(name)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    def read(self) -> dict[str, list[str]]:
        """Every worker's log lines, by log file name (in start order)."""
        return {
            log.name: log.read_text(errors="replace").splitlines()
            for log in sorted(self.logs.glob("*.log"))
        }

    def tails(self, lines: int = 15) -> str:
        """The last lines of every worker's log (newest start last)."""
        return "\n".join(
            f"--- {name}\n" + "\n".join(text[-lines:])
            for name, text in self.read().items()
        )

    def internal_errors(self) -> list[str]:
        """The logs of processes where a saga stopped on an internal error
        (a lost connection is retried, and logged, but is no such error)."""
        return [
            name
            for name, text in self.read().items()
            if any("saga stopped by an internal error" in line for line in text)
        ]


@pytest.fixture(params=BACKENDS[1:])  # the servers: PostgreSQL, MySQL
def db(request: pytest.FixtureRequest) -> str:
    """A database of each server, with an ``effects`` table stamped by the
    database's clock."""
    url = str(request.getfixturevalue(SERVER_URLS[request.param]))
    run_sync(effects_table.create(url, "saga_id", clock=True))
    return url


def query(url: str, sql: str) -> list[dict[str, Any]]:
    return run_sync(effects_table.fetch(url, sql))[0]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _statuses(db: str) -> Counter[str]:
    rows = query(db, "SELECT status, count(*) AS n FROM sagakit_saga GROUP BY status")
    return Counter({r["status"]: int(r["n"]) for r in rows})


def _parked(db: str) -> list[str]:
    """The unfinished sagas parked as poison: a step of theirs was in flight
    in ``max_crash_attempts`` (3) processes that stopped. Here the test's
    kills stopped them; a saga holding a hot key runs its steps while every
    other saga waits, so it is in flight at kill after kill."""
    rows = query(
        db,
        "SELECT saga_id, state FROM sagakit_saga"
        " WHERE status IN ('running', 'compensating')",
    )
    return sorted(r["saga_id"] for r in rows if _json(r["state"]).get("parked"))


def _unpause(db: str, saga: str) -> None:
    """What an operator does with a saga parked as poison whose step is
    known to be sound: let it go on (its locks are still its own)."""
    done = subprocess.run(
        [
            sys.executable,
            *("-m", "sagakit.cli.main", "--db", db, "unpause", saga),
            *("--sagas", APP, "--as", "chaos", "--reason", "the test's kills"),
        ],
        capture_output=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def _locks(db: str) -> tuple[int, int]:
    """How many keys are held, and how many queue places are taken."""
    held = query(db, "SELECT count(*) AS n FROM sagakit_lock")[0]["n"]
    queued = query(db, "SELECT count(*) AS n FROM sagakit_lock_waiter")[0]["n"]
    return int(held), int(queued)


def _stuck(db: str) -> str:
    """What holds each key, and the sagas not finished: for a failure's
    message (a liveness failure is otherwise hard to read after the fact)."""
    holders = query(
        db,
        "SELECT l.lock_key, l.saga_id, l.step, s.status, s.owner, s.lease_until,"
        " s.version, s.updated_at FROM sagakit_lock l"
        " LEFT JOIN sagakit_saga s ON s.saga_id = l.saga_id",
    )
    heads = query(
        db,
        "SELECT w.lock_key, w.saga_id, w.step, w.position FROM sagakit_lock_waiter w"
        " WHERE w.position = (SELECT min(v.position) FROM sagakit_lock_waiter v"
        " WHERE v.lock_key = w.lock_key)",
    )
    waiting = query(
        db,
        "SELECT w.saga_id, w.lock_key, w.step, w.position FROM sagakit_lock_waiter w"
        " JOIN sagakit_lock l ON l.saga_id = w.saga_id",
    )
    unfinished = query(
        db,
        "SELECT status, owner, count(*) AS n, min(lease_until) AS lease_min,"
        " max(lease_until) AS lease_max, max(updated_at) AS updated"
        " FROM sagakit_saga WHERE status IN ('running', 'compensating')"
        " GROUP BY status, owner",
    )
    now = query(db, "SELECT max(updated_at) AS latest FROM sagakit_saga")[0]
    return (
        f"holders {holders}\nqueue heads {heads}\nholders waiting {waiting}\n"
        f"unfinished by owner {unfinished}\nlatest update {now}"
    )


def _overlaps(db: str) -> list[str]:
    """Two sagas holding one key at once, per the rows their steps wrote."""
    rows = query(
        db,
        "SELECT e.saga_id, e.step, e.at, s.context FROM effects e "
        "JOIN sagakit_saga s ON s.saga_id = e.saga_id",
    )
    assert rows, "the steps wrote no effect rows: nothing to check"
    return overlapping(
        [(r["saga_id"], r["step"], float(r["at"]), _json(r["context"])) for r in rows]
    )


def overlapping(rows: list[tuple[str, str, float, dict[str, int]]]) -> list[str]:
    """Of ``rows`` (saga, step, when, context), the places where two sagas
    held a key at once: a saga holds ``hot:<a>`` from its first ``first``
    row to its last row, and ``hot:<b>`` from its first ``second`` row."""
    spans: dict[str, dict[str, float]] = {}
    ctx: dict[str, dict[str, int]] = {}
    for saga, step, at, context in rows:
        span = spans.setdefault(saga, {})
        span["last"] = max(span.get("last", at), at)
        if step in ("first", "second"):
            span[step] = min(span.get(step, at), at)
        ctx[saga] = context
    held: dict[int, dict[str, tuple[float, float]]] = {}
    for saga, span in spans.items():
        for step, field in (("first", "a"), ("second", "b")):
            if step not in span:
                continue
            by_saga = held.setdefault(ctx[saga][field], {})
            begin, end = by_saga.get(saga, (span[step], span["last"]))
            by_saga[saga] = (min(begin, span[step]), end)  # a == b: held once
    found = []
    for key, by_saga in sorted(held.items()):
        ordered = sorted((begin, end, saga) for saga, (begin, end) in by_saga.items())
        for (_, end, saga), (begin, _, other) in itertools.pairwise(ordered):
            if begin < end:
                found.append(f"hot:{key}: {other} took it at {begin}, {saga} at {end}")
    return found


def test_the_overlap_check_sees_two_holders() -> None:
    one, two = {"a": 0, "b": 1}, {"a": 1, "b": 0}
    apart = [("x", "first", 1, one), ("x", "finish", 2, one), ("y", "first", 3, two)]
    assert overlapping([*apart, ("y", "second", 4, two)]) == []
    # y took hot:0 in its second step while x, which held it, still ran
    late = [*apart, ("y", "second", 1.5, two)]
    assert overlapping(late) == ["hot:0: y took it at 1.5, x at 2"]


def _endings(db: str, count: int, seed: int) -> Counter[str]:
    """How the sagas ended, by error type (or status where none); a saga
    that compensated without being meant to fail lost a lock."""
    errors: Counter[str] = Counter()
    for saga, ctx in plan(count, seed):
        (record,) = query(
            db,
            "SELECT status, state FROM sagakit_saga "  # noqa: S608 - our own ids
            f"WHERE saga_id = '{saga_id(ctx.index)}'",
        )
        status = record["status"]
        error = (_json(record["state"]).get("error") or {}).get("type")
        if status == "compensated" and not ctx.fail:
            assert error in LOCK_ERRORS, (saga.name, ctx, error)
        errors[error or status] += 1
    return errors


class Kills:
    """Kills a worker each time a share of the sagas (drawn from 10-80 %)
    has ended, at least KILL_GAP apart: spread over the run, however fast
    the machine ends the sagas. ``done`` names each victim and when."""

    def __init__(
        self, rng: random.Random, count: int, kills: int, began: float
    ) -> None:
        self.rng, self.began = rng, began
        self.marks = sorted(rng.uniform(0.1, 0.8) * count for _ in range(kills))
        self.done: list[str] = []
        self.next = began + KILL_GAP

    def when_due(self, workers: Workers, ended: int, now: float) -> None:
        if len(self.done) == len(self.marks) or now < self.next:
            return
        if ended >= self.marks[len(self.done)]:
            victim = self.rng.choice(sorted(workers.procs))
            workers.kill(victim)
            self.done.append(f"{victim}@{now - self.began:.1f}s")
            self.next = now + KILL_GAP


def test_hot_keys_under_worker_kills(db: str, tmp_path: Path) -> None:
    count = int(os.environ.get("LOCK_CHAOS_SAGAS", "120"))
    kills = int(os.environ.get("LOCK_CHAOS_KILLS", "4"))
    seed = int(os.environ.get("LOCK_CHAOS_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    submitted = subprocess.run(
        [sys.executable, "-m", APP, "submit", db, str(count), str(seed)],
        capture_output=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert submitted.returncode == 0, submitted.stderr.decode()[-3000:]
    workers = Workers(db, tmp_path)
    try:
        began = time.monotonic()
        for name in ("w0", "w1"):
            workers.start(name)
        kill = Kills(rng, count, kills, began)
        killed = kill.done
        unpaused: list[str] = []
        next_look = began + 1.0
        while True:
            done = _statuses(db)
            if done["running"] + done["compensating"] == 0:
                break
            ended = done["succeeded"] + done["compensated"] + done["failed"]
            now = time.monotonic()
            if now - began > DEADLINE:
                pytest.fail(
                    f"sagas still waiting after {DEADLINE:g}s (seed {seed}, kills "
                    f"{killed}, unpaused {unpaused}): {dict(done)}; "
                    f"locks {_locks(db)}\n"
                    f"{_stuck(db)}\n{workers.tails()}"
                )
            workers.supervise()
            if now >= next_look:  # an operator's look at parked sagas
                for saga in _parked(db):
                    _unpause(db, saga)
                    unpaused.append(saga)
                next_look = now + 1.0
            kill.when_due(workers, ended, now)
            time.sleep(0.2)
        ran = time.monotonic() - began
    finally:
        workers.stop()

    statuses = _statuses(db)
    assert set(statuses) <= {"succeeded", "compensated"}, dict(statuses)
    assert _locks(db) == (0, 0)
    assert _overlaps(db) == []
    errors = _endings(db, count, seed)
    assert len(killed) >= min(kills, 2), f"the sagas ended before the kills: {killed}"
    assert workers.internal_errors() == []
    if unpaused:  # every step here runs holding a key: the log names it
        lines = [line for text in workers.read().values() for line in text]
        parked = [line for line in lines if "poison saga parked" in line]
        assert parked, "a saga was unpaused, but no worker logged parking one"
        assert all("keeps_locks=['hot:" in t for t in parked), parked
    print(
        f"\n[lock contention] {count} sagas on 3 hot keys, seed {seed}, "
        f"{ran:.1f}s; kills {killed}; parked as poison and unpaused {unpaused}"
        f"\noutcomes {dict(statuses)}; "
        f"by error {dict(errors)} (every {FAIL_EVERY}th fails at finish)"
    )
