"""SIGKILL a worker mid-step; a restarted worker finishes every saga.

Committed steps never run again; only the step in flight at the kill may run
twice (at-least-once), and every saga ends in a terminal status.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sagakit import SagaStatus, SQLiteStore

APP = Path(__file__).with_name("crash_app.py")
pytestmark = pytest.mark.e2e


def _spawn(log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, str(APP), *args], stdout=sink, stderr=subprocess.STDOUT
        )


def _wait_for(
    path: Path, proc: subprocess.Popen[bytes], log: Path, seconds: float = 20
) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"worker exited early: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("worker never reached the hanging step")
        time.sleep(0.01)


def _effects(path: Path) -> collections.Counter[tuple[str, str]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return collections.Counter(tuple(line.split()) for line in lines)  # type: ignore[misc]


ROOT = APP.parents[2]


def _recover(how: str, db: Path, effects: Path) -> subprocess.CompletedProcess[bytes]:
    if how == "api":
        command = [sys.executable, str(APP), str(db), str(effects), "recover"]
    else:
        command = [
            sys.executable,
            "-m",
            "sagakit.cli.main",
            "--db",
            str(db),
            "recover",
            "tests.e2e.crash_app:saga",
        ]
    env = {**os.environ, "CRASH_EFFECTS": str(effects)}
    return subprocess.run(
        command, capture_output=True, timeout=60, check=False, cwd=ROOT, env=env
    )


@pytest.mark.parametrize(("sagas", "how"), [(1, "api"), (40, "api"), (5, "cli")])
def test_sigkill_mid_step_then_recover(tmp_path: Path, sagas: int, how: str) -> None:
    db, effects = tmp_path / "crash.db", tmp_path / "effects.txt"
    log = tmp_path / "worker.log"
    worker = _spawn(log, str(db), str(effects), "start", str(sagas))
    _wait_for(Path(f"{effects}.ready"), worker, log)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    assert worker.returncode == -signal.SIGKILL

    before_kill = asyncio.run(_committed_successes(db))
    assert ("saga-0", "one") in before_kill
    assert ("saga-0", "two") not in before_kill

    recovered = _recover(how, db, effects)
    assert recovered.returncode == 0, recovered.stderr.decode()[-2000:]
    if how == "cli":
        assert b"resumed" in recovered.stdout

    store = SQLiteStore(db)
    counts = _effects(effects)
    for i in range(sagas):
        saga_id = f"saga-{i}"
        record = asyncio.run(store.get(saga_id))
        assert record.status is SagaStatus.SUCCEEDED, saga_id
        for step in ("one", "two", "three"):
            ran = counts[(saga_id, step)]
            if (saga_id, step) in before_kill:
                assert ran == 1, (
                    f"{saga_id}/{step} committed before the kill ran {ran}x"
                )
            else:
                assert 1 <= ran <= 2, f"{saga_id}/{step} ran {ran}x"
    # the step that hung at the kill ran again, exactly once more
    assert counts[("saga-0", "two")] == 2
    resumed = asyncio.run(store.history("saga-0"))
    assert [h.outcome for h in resumed if h.kind == "saga"] == [
        "started",
        "resumed",
        "succeeded",
    ]


async def _committed_successes(db: Path) -> set[tuple[str, str]]:
    store = SQLiteStore(db)
    done: set[tuple[str, str]] = set()
    for record in await store.list_sagas(limit=10_000):
        for h in await store.history(record.saga_id):
            if h.kind == "action" and h.outcome == "succeeded" and h.step:
                done.add((record.saga_id, h.step))
    await store.close()
    return done
