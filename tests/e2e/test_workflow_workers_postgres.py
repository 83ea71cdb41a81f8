"""Two workflow worker processes on one PostgreSQL database; one is SIGKILLed.

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

from tests.conftest import admin, run_sync

APP_FILE = Path(__file__).with_name("pg_workflow_app.py")
ROOT = APP_FILE.parents[2]
COUNT = 200
STEPS = ("one", "two", "three")

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.e2e]


async def _query(url: str, sql: str) -> list[Any]:
    import asyncpg  # noqa: PLC0415 - only the PostgreSQL tests need the driver

    conn = await asyncpg.connect(url, timeout=5)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def query(url: str, sql: str) -> list[Any]:
    return run_sync(_query(url, sql))


def spawn(script: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """``python script *args`` from the repository root, output added to
    ``log``."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, str(script), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def app(url: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    return spawn(APP_FILE, url, *args, log=log)


def test_two_workers_one_killed(pg_url: str, tmp_path: Path) -> None:
    run_sync(
        admin(
            "CREATE TABLE effects (id bigint GENERATED ALWAYS AS IDENTITY "
            "PRIMARY KEY, instance_id text NOT NULL, step text NOT NULL, "
            "pid integer NOT NULL)",
            url=pg_url,
        )
    )
    submitter = app(pg_url, "submit", str(COUNT), log=tmp_path / "submit.log")
    assert submitter.wait(60) == 0, (tmp_path / "submit.log").read_text()[-3000:]
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    procs = [app(pg_url, "worker", "--lease", "2", log=log) for log in logs]
    try:
        deadline = time.monotonic() + 60
        while True:
            (done,) = query(
                pg_url,
                "SELECT count(*) FROM sagakit_workflow WHERE status = 'succeeded'",
            )
            if done[0] >= COUNT // 4:
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

    statuses = query(pg_url, "SELECT status, count(*) FROM sagakit_workflow GROUP BY 1")
    assert {r[0]: r[1] for r in statuses} == {"succeeded": COUNT}
    effects = query(pg_url, "SELECT instance_id, step, pid FROM effects")
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
        pg_url,
        "SELECT instance_id, step, count(*) AS n FROM sagakit_workflow_history "
        "WHERE outcome = 'succeeded' GROUP BY 1, 2",
    )
    assert len(committed) == COUNT * len(STEPS)
    assert all(r["n"] == 1 for r in committed)
