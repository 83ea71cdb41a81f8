"""SIGKILL a worker at each boundary between a parent saga and its sub-saga;
the next process recovers both, and every effect happens exactly once.

The boundaries (see subsaga_app.py): the parent committed its step but the
child does not exist yet; the child succeeded but the parent was not told;
the parent asked the child to roll back and the child's compensation runs.
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

from sagakit import SagaNotFound, SagaStatus, SQLiteStore, StepStatus
from sagakit.ports.store import SagaRecord

APP = Path(__file__).with_name("subsaga_app.py")
ROOT = APP.parents[2]
pytestmark = pytest.mark.e2e

SUCCESS = ["reserve", "authorize", "charge", "ship"]
ROLLBACK = [
    "reserve",
    "authorize",
    "charge",
    "ship failed",
    "undo charge",
    "undo authorize",
    "undo reserve",
]


def _kill_at(boundary: str, db: Path, effects: Path, log: Path) -> None:
    with log.open("wb") as sink:
        worker = subprocess.Popen(
            [sys.executable, str(APP), str(db), str(effects), "start", boundary],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    ready = Path(f"{effects}.ready")
    deadline = time.monotonic() + 30
    while not ready.exists():
        if worker.poll() is not None:
            pytest.fail(f"worker exited early: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            worker.kill()
            pytest.fail(f"worker never reached {boundary}")
        time.sleep(0.01)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    assert worker.returncode == -signal.SIGKILL


def _cli(db: Path, effects: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SUBSAGA_EFFECTS": str(effects), "COLUMNS": "200"}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "sagakit.cli.main", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env=env,
    )


async def _records(db: Path) -> tuple[SagaRecord, SagaRecord | None]:
    store = SQLiteStore(db)
    try:
        parent = await store.get("o")
        try:
            child: SagaRecord | None = await store.get("o/pay")
        except SagaNotFound:
            child = None
        return parent, child
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("boundary", "how"), [("created", "api"), ("told", "cli"), ("rollback", "api")]
)
def test_sigkill_at_a_boundary_then_recover(
    tmp_path: Path, boundary: str, how: str
) -> None:
    db, effects = tmp_path / "children.db", tmp_path / "effects.txt"
    _kill_at(boundary, db, effects, tmp_path / "worker.log")

    parent, child = asyncio.run(_records(db))
    pay = parent.state.step("pay").status
    if boundary == "created":
        assert (pay, child) == (StepStatus.RUNNING, None)
    elif boundary == "told":
        assert child is not None
        assert (pay, child.status) == (StepStatus.RUNNING, SagaStatus.SUCCEEDED)
    else:
        assert child is not None
        assert (pay, child.status) == (
            StepStatus.COMPENSATING,
            SagaStatus.COMPENSATING,
        )

    if how == "api":
        command = [sys.executable, str(APP), str(db), str(effects), "recover"]
        recovered = subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=False
        )
    else:
        recovered = _cli(db, effects, "recover", "tests.e2e.subsaga_app:order")
    assert recovered.returncode == 0, recovered.stderr[-2000:]

    parent, child = asyncio.run(_records(db))
    assert child is not None
    expected = (
        SagaStatus.COMPENSATED if boundary == "rollback" else SagaStatus.SUCCEEDED
    )
    assert (parent.status, child.status) == (expected, expected)
    done = effects.read_text().splitlines()
    assert collections.Counter(done) == collections.Counter(
        ROLLBACK if boundary == "rollback" else SUCCESS
    ), done

    shown = _cli(db, effects, "show", "o")
    assert shown.returncode == 0, shown.stderr
    assert "sub-saga pay" in shown.stdout
    assert f"o/pay (payment) {expected.value}" in shown.stdout
    shown = _cli(db, effects, "show", "o/pay")
    assert "o (step pay)" in shown.stdout
