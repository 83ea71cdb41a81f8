"""Two workflow worker processes on one database (PostgreSQL, then MySQL);
one is SIGKILLed.

The survivor takes over the victim's instances once their leases expire:
every instance finishes, a step committed before the kill never runs again
(one ``succeeded`` line per step), and a step in flight at the kill runs at
most twice (at-least-once).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BACKENDS, SERVER_URLS, run_sync
from tests.e2e import effects_table

APP_FILE = Path(__file__).with_name("pg_workflow_app.py")
ROOT = APP_FILE.parents[2]
COUNT = 200
STEPS = ("one", "two", "three")

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(params=BACKENDS[1:])  # the servers: PostgreSQL, MySQL
def db(request: pytest.FixtureRequest) -> str:
    """A database of each server, with an ``effects`` table."""
    url = str(request.getfixturevalue(SERVER_URLS[request.param]))
    run_sync(effects_table.create(url, "instance_id"))
    return url


def query(url: str, sql: str) -> list[dict[str, Any]]:
    return run_sync(effects_table.fetch(url, sql))[0]


def spawn(script: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """``python -m <script's module> *args`` from the repository root (so
    that it can import ``tests``), output added to ``log``."""
    module = ".".join(script.relative_to(ROOT).with_suffix("").parts)
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def app(url: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    return spawn(APP_FILE, url, *args, log=log)


def test_two_workers_one_killed(db: str, tmp_path: Path) -> None:
    submitter = app(db, "submit", str(COUNT), log=tmp_path / "submit.log")
    assert submitter.wait(60) == 0, (tmp_path / "submit.log").read_text()[-3000:]
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    procs = [app(db, "worker", "--lease", "2", log=log) for log in logs]
    try:
        deadline = time.monotonic() + 60
        while True:
            (done,) = query(
                db,
                "SELECT count(*) AS n FROM sagakit_workflow WHERE status = 'succeeded'",
            )
            if done["n"] >= COUNT // 4:
                break
            assert time.monotonic() < deadline, logs[0].read_text()[-3000:]
            time.sleep(0.02)
        victim, survivor = procs
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        assert survivor.wait(90) == 0, logs[1].read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    statuses = query(
        db, "SELECT status, count(*) AS n FROM sagakit_workflow GROUP BY status"
    )
    assert {r["status"]: r["n"] for r in statuses} == {"succeeded": COUNT}
    effects = query(db, "SELECT instance_id, step, pid FROM effects")
    counts = collections.Counter((r["instance_id"], r["step"]) for r in effects)
    assert set(counts) == {(f"wf-{i:05}", s) for i in range(COUNT) for s in STEPS}
    assert max(counts.values()) <= 2
    twice = {key for key, n in counts.items() if n == 2}
    pids = {r["pid"] for r in effects}
    assert victim.pid in pids
    assert survivor.pid in pids
    for r in effects:  # a step run twice was in flight in the victim at the kill
        if (r["instance_id"], r["step"]) in twice:
            assert r["pid"] in (victim.pid, survivor.pid)
    assert len(twice) <= 50  # at most the victim's in-flight steps (max_active)
    committed = query(
        db,
        "SELECT instance_id, step, count(*) AS n FROM sagakit_workflow_history "
        "WHERE outcome = 'succeeded' GROUP BY 1, 2",
    )
    assert len(committed) == COUNT * len(STEPS)
    assert all(r["n"] == 1 for r in committed)
