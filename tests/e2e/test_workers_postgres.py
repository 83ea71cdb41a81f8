"""Several worker processes on one database: kills and restarts.

The kill runs on PostgreSQL and on MySQL; the restart on PostgreSQL.

``pg_worker_app.py`` steps record each effect in the ``effects`` table before
they return. A SIGKILLed worker's instances are claimed by the others once its
lease expires: a step whose success was committed before the kill never runs
again; the step in flight at the kill may run twice (at-least-once). A
database restart mid-run is ridden out by the workers themselves (on a
private server: :mod:`tests.private_services`).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import BACKENDS, SERVER_URLS, run_sync
from tests.e2e import effects_table

if TYPE_CHECKING:
    from tests.private_services import PrivatePostgres, PrivateRabbit

APP = "tests.e2e.pg_worker_app"
ROOT = Path(__file__).parents[2]
LEASE = 2.0
FAIL_EVERY = 5  # pg_worker_app: index % 5 == 4 fails at step three
TERMINAL = ("succeeded", "compensated")

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

Key = tuple[str, str]  # (saga_id, "one" | "undo:one" | ...)


@pytest.fixture(params=BACKENDS[1:])  # the servers: PostgreSQL, MySQL
def db(request: pytest.FixtureRequest) -> str:
    """A database of each server, with the ``effects`` table the app's steps
    write to."""
    url = str(request.getfixturevalue(SERVER_URLS[request.param]))
    run_sync(effects_table.create(url, "saga_id"))
    return url


@pytest.fixture
def private_db(private_pg_url: str) -> str:
    """:func:`db` on the private PostgreSQL server (restarted by a test)."""
    run_sync(effects_table.create(private_pg_url, "saga_id"))
    return private_pg_url


def query(url: str, sql: str) -> list[dict[str, Any]]:
    return run_sync(effects_table.fetch(url, sql))[0]


def terminal_count(url: str) -> int:
    rows = query(
        url,
        "SELECT count(*) AS n FROM sagakit_saga WHERE status IN "
        "('succeeded', 'compensated')",
    )
    return int(rows[0]["n"])


class Workers:
    """Worker subprocesses, their logs, and a cleanup that kills leftovers."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url, self.logs = url, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker-{len(self.procs)}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", APP, self.url, "worker", *args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        self.procs.append(proc)
        return proc

    def log(self, index: int) -> str:
        return (self.logs / f"worker-{index}.log").read_text()

    def running(self) -> bool:
        """True; fails the test with its log if a worker exited early."""
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                pytest.fail(f"worker {i} exited early: {self.log(i)[-3000:]}")
        return True

    def wait_all(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for i, proc in enumerate(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {i} did not finish: {self.log(i)[-3000:]}")

    def summary(self, index: int) -> dict[str, Any]:
        lines = [ln for ln in self.log(index).splitlines() if ln.startswith("{")]
        assert lines, f"worker {index} printed no summary: {self.log(index)[-3000:]}"
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@contextlib.contextmanager
def running_workers(db: str, logs: Path) -> Iterator[Workers]:
    group = Workers(db, logs)
    try:
        yield group
    finally:
        group.kill_all()


@pytest.fixture
def workers(db: str, tmp_path: Path) -> Iterator[Workers]:
    with running_workers(db, tmp_path) as group:
        yield group


@pytest.fixture
def private_workers(private_db: str, tmp_path: Path) -> Iterator[Workers]:
    with running_workers(private_db, tmp_path) as group:
        yield group


def submit(url: str, count: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", APP, url, "submit", str(count)],
        capture_output=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]


def wait_until(what: str, check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Outcome:
    status: dict[str, str]
    fails: dict[str, bool]
    effects: collections.Counter[Key]
    effect_pids: collections.Counter[int]
    pids: dict[Key, list[int]]  # which worker processes recorded each effect
    # per saga, in commit order: (kind, step, outcome) of action/compensation lines
    steps: dict[str, list[tuple[str, str, str]]]
    claims: dict[str, list[str]]  # saga -> workers that claimed it, in order
    errors: dict[str, list[str]]  # saga -> exception types of failed lines


def outcome(url: str) -> Outcome:
    sagas = query(url, "SELECT saga_id, status, context FROM sagakit_saga")
    history = query(
        url,
        "SELECT saga_id, step, kind, outcome, result, error "
        "FROM sagakit_step_history ORDER BY id",
    )
    effects = query(url, "SELECT saga_id, step, pid FROM effects ORDER BY id")
    pids: dict[Key, list[int]] = collections.defaultdict(list)
    for e in effects:
        pids[(e["saga_id"], e["step"])].append(e["pid"])
    steps: dict[str, list[tuple[str, str, str]]] = collections.defaultdict(list)
    claims: dict[str, list[str]] = collections.defaultdict(list)
    errors: dict[str, list[str]] = collections.defaultdict(list)
    for h in history:
        if h["error"] is not None:  # JSON text: its "type"
            error = (json.loads(h["error"]) or {}).get("type")
            errors[h["saga_id"]].append(f"{h['kind']} {h['step']}: {error}")
        if h["kind"] in ("action", "compensation"):
            steps[h["saga_id"]].append((h["kind"], h["step"], h["outcome"]))
        elif h["outcome"] == "claimed":
            claims[h["saga_id"]].append(json.loads(h["result"])["worker"])
    return Outcome(
        status={r["saga_id"]: r["status"] for r in sagas},
        fails={r["saga_id"]: json.loads(r["context"])["fail"] for r in sagas},
        effects=collections.Counter((e["saga_id"], e["step"]) for e in effects),
        effect_pids=collections.Counter(e["pid"] for e in effects),
        pids=pids,
        steps=steps,
        claims=claims,
        errors=errors,
    )


COMMITTED = (
    "SELECT saga_id, step, kind FROM sagakit_step_history "
    "WHERE outcome = 'succeeded' AND kind IN ('action', 'compensation')"
)
IN_THE_MIDDLE = (  # {pid}: an int, formatted in (placeholders differ)
    "SELECT count(DISTINCT e.saga_id) AS n FROM effects e "
    "JOIN sagakit_saga s ON s.saga_id = e.saga_id WHERE e.pid = {pid} "
    "AND s.status NOT IN ('succeeded', 'compensated', 'failed', "
    "'compensation_failed')"
)
MIDDLE_AT_KILL = 3  # unfinished sagas the victim must have run a step of


def _effect_keys(rows: list[Any]) -> set[Key]:
    return {
        (r["saga_id"], r["step"] if r["kind"] == "action" else f"undo:{r['step']}")
        for r in rows
    }


def committed_effects(url: str) -> set[Key]:
    """Effects whose step or compensation success is committed in the history."""
    return _effect_keys(query(url, COMMITTED))


async def _before_kill(url: str, pid: int) -> tuple[set[Key], int]:
    """What is committed now, then how many unfinished sagas the worker ``pid``
    has run a step of: one connection, in that order, so the kill follows."""
    committed, middle = await effects_table.fetch(
        url, COMMITTED, IN_THE_MIDDLE.format(pid=int(pid))
    )
    return _effect_keys(committed), int(middle[0]["n"])


def expected_effects(fails: bool) -> list[str]:
    return ["one", "two", "undo:two", "undo:one"] if fails else ["one", "two", "three"]


def check_sagas(result: Outcome, count: int) -> None:
    """Every saga ended as it was meant to, its history in the right order."""
    assert len(result.status) == count
    for sid, status in result.status.items():
        fails = result.fails[sid]
        assert fails == (int(sid.split("-")[1]) % FAIL_EVERY == FAIL_EVERY - 1)
        assert status == ("compensated" if fails else "succeeded"), (
            sid,
            result.errors[sid],
        )
        done = [(k, s) for k, s, o in result.steps[sid] if o == "succeeded"]
        if fails:
            # compensations exactly for the completed steps, in reverse order
            assert done == [
                ("action", "one"),
                ("action", "two"),
                ("compensation", "two"),
                ("compensation", "one"),
            ], sid
            failed = [(k, s) for k, s, o in result.steps[sid] if o == "failed"]
            assert failed == [("action", "three")], sid
        else:
            assert done == [("action", s) for s in ("one", "two", "three")], sid
        for label in ("one", "two", "three", "undo:one", "undo:two", "undo:three"):
            if label not in expected_effects(fails):
                assert result.effects[(sid, label)] == 0, (sid, label)


def test_three_workers_one_killed(workers: Workers, db: str) -> None:
    count = 1000
    began = time.monotonic()
    submit(db, count)
    submitted = time.monotonic()
    procs = [workers.start("--lease", str(LEASE)) for _ in range(3)]
    victim = procs[0]

    # The kill must land while the victim is in the middle of sagas. With
    # three processes on two cores the victim may get little work, and the
    # few sagas it had could end before the kill: so it is killed right after
    # a check finds it in the middle of several.
    seen: dict[str, set[Key]] = {}

    def victim_in_the_middle() -> bool:
        if not (workers.running() and terminal_count(db) >= count // 3):
            return False
        seen["committed"], middle = run_sync(_before_kill(db, victim.pid))
        return middle >= MIDDLE_AT_KILL

    wait_until(
        "a third of the sagas to end, the victim in the middle of some",
        victim_in_the_middle,
        60,
    )
    os.kill(victim.pid, signal.SIGKILL)
    before_kill = seen["committed"]  # a subset of what was committed at the kill
    killed_at = time.monotonic()
    victim.wait(10)
    assert victim.returncode == -signal.SIGKILL
    terminal_at_kill = terminal_count(db)

    workers.wait_all(90)
    finished = time.monotonic()
    for i, proc in enumerate(procs[1:], start=1):
        assert proc.returncode == 0, workers.log(i)[-3000:]

    result = outcome(db)
    check_sagas(result, count)

    duplicated: list[Key] = []
    for sid, fails in result.fails.items():
        for label in expected_effects(fails):
            ran = result.effects[(sid, label)]
            if (sid, label) in before_kill:
                assert ran == 1, f"{sid}/{label} committed before the kill ran {ran}x"
            else:
                assert 1 <= ran <= 2, f"{sid}/{label} ran {ran}x"
            if ran == 2:
                duplicated.append((sid, label))

    # only the victim's instances change hands, and only they repeat a step:
    # first in the victim, then in the worker that took the saga over
    def pid(worker_id: str) -> int:
        return int(worker_id.split(":")[-2])

    touched = {sid for sid, who in result.claims.items() if victim.pid in map(pid, who)}
    touched |= {sid for (sid, _), ps in result.pids.items() if victim.pid in ps}
    for key in duplicated:
        first, second = result.pids[key]
        assert first == victim.pid != second, (key, result.pids[key])
    taken_over = {sid for sid in touched if pid(result.claims[sid][-1]) != victim.pid}
    assert taken_over, "the kill landed when the victim drove nothing"
    for sid, who in result.claims.items():
        assert len(who) == len(set(who)), f"{sid} claimed twice by one worker: {who}"
        if sid not in touched:
            assert len(who) == 1, f"{sid} changed hands without a kill: {who}"
    assert set(result.claims) == set(result.status)  # every saga was claimed

    finishers = collections.Counter(
        who[-1].split(":")[-2] for who in result.claims.values()
    )
    claims = collections.Counter(
        w.split(":")[-2] for who in result.claims.values() for w in who
    )
    print(
        f"\n{count} sagas; submit {submitted - began:.1f}s, run "
        f"{finished - submitted:.1f}s (kill at {killed_at - submitted:.1f}s, "
        f"{terminal_at_kill} terminal); victim pid {victim.pid}\n"
        f"claims per worker pid: {dict(claims)}\n"
        f"sagas finished per worker pid: {dict(finishers)}\n"
        f"effects per worker pid: {dict(result.effect_pids)}\n"
        f"taken over from the victim: {len(taken_over)}; duplicated effects of "
        f"in-flight steps: {len(duplicated)} "
        f"{collections.Counter(label for _, label in duplicated)}; "
        f"committed before the kill (each once): {len(before_kill)}"
    )


@pytest.mark.postgres
@pytest.mark.xdist_group("private_servers")  # one private pair per run
def test_postgres_restart_mid_run(
    private_workers: Workers,
    private_db: str,
    private_servers: tuple[PrivatePostgres, PrivateRabbit],
) -> None:
    workers, db = private_workers, private_db
    count = 300
    submit(db, count)
    args = ("--lease", str(LEASE), "--max-active", "5", "--sleep-ms", "15-30")
    procs = [workers.start(*args) for _ in range(2)]

    wait_until(
        "a quarter of the sagas to end",
        lambda: workers.running() and terminal_count(db) >= count // 4,
        60,
    )
    terminal_before = terminal_count(db)
    downtime = private_servers[0].restart(LEASE + 1)
    terminal_after = terminal_count(db)
    assert terminal_after < count, "the run ended before the restart"

    workers.wait_all(90)
    for i, proc in enumerate(procs):
        assert proc.returncode == 0, f"worker {i} crashed: {workers.log(i)[-3000:]}"
        assert workers.summary(i)["claimed"] > 0

    result = outcome(db)
    check_sagas(result, count)
    left = query(
        db,
        "SELECT count(*) AS n FROM sagakit_saga "
        "WHERE status IN ('running', 'compensating')",
    )
    assert left[0]["n"] == 0
    for sid, fails in result.fails.items():
        for label in expected_effects(fails):
            assert result.effects[(sid, label)] >= 1, (sid, label)
    duplicated = sum(1 for n in result.effects.values() if n > 1)
    retried = sum(
        workers.log(i).count("save failed; retrying") for i in range(len(procs))
    )
    logs = "".join(workers.log(i) for i in range(len(procs)))
    felt = ("claim failed", "save failed", "lease renewal failed")
    assert any(f in logs for f in felt), "no worker noticed the restart"
    changed_hands = sum(1 for who in result.claims.values() if len(who) > 1)
    print(
        f"\n{count} sagas; restart took {downtime:.1f}s with {terminal_before} -> "
        f"{terminal_after} terminal; save retries logged: {retried}; sagas that "
        f"changed hands: {changed_hands}; duplicated effects: {duplicated}"
    )
