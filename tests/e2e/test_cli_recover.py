"""``sagakit recover`` batch by batch: a line per batch on stderr, every
unfinished saga resumed, ``--limit``, and a signal that stops it after the
current batch, each saying how many are left (run as a subprocess)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sagakit import SagaStatus, SQLiteStore
from sagakit.runtime import Orchestrator
from tests.e2e.recover_app import Ctx, saga

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.e2e.recover_app:saga"
LEFT = re.compile(r"after (\d+) batch\(es\): (\d+) unfinished saga\(s\)")


def environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SAGAKIT_DATABASE_URL"}
    env.update({"COLUMNS": "200", "NO_COLOR": "1"}, **extra)
    return env


def recover(db: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sagakit.cli.main",
            "--db",
            str(db),
            "recover",
            APP,
            *args,
        ],
        cwd=ROOT,
        env=environ(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def unfinished(db: Path, n: int) -> None:
    """``n`` sagas committed and never driven, as a producer leaves them."""

    async def submit() -> None:
        producer = Orchestrator(SQLiteStore(db), [saga])
        for i in range(n):
            await producer.submit(saga, Ctx(n=i))
        await producer.close()

    asyncio.run(submit())


def counts(db: Path) -> dict[SagaStatus, int]:
    return asyncio.run(SQLiteStore(db).count_by_status())


def batch_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("batch ")]


def test_a_line_per_batch_and_every_saga_resumed(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    unfinished(db, 5)

    done = recover(db, "--batch-size", "2")

    assert done.returncode == 0, done.stderr
    assert batch_lines(done.stderr) == [
        "batch 1: resumed 2 saga(s), 2 so far",
        "batch 2: resumed 2 saga(s), 4 so far",
        "batch 3: resumed 1 saga(s), 5 so far",
    ]
    assert "resumed 5 saga(s)" in done.stdout
    assert "left" not in done.stdout
    assert counts(db) == {SagaStatus.SUCCEEDED: 5}
    again = recover(db, "--batch-size", "2")
    assert again.returncode == 0, again.stderr
    assert "resumed 0 saga(s)" in again.stdout
    assert batch_lines(again.stderr) == []


def test_more_than_the_table_shows(tmp_path: Path) -> None:
    db = tmp_path / "many.db"
    unfinished(db, 57)

    done = recover(db)  # one batch of the default size

    assert done.returncode == 0, done.stderr
    assert batch_lines(done.stderr) == ["batch 1: resumed 57 saga(s), 57 so far"]
    assert "resumed 57 saga(s)" in done.stdout
    assert "50 saga(s)" in done.stdout  # the table's title
    assert "(and 7 more: sagakit list)" in done.stdout


def test_a_limit_says_how_many_are_left(tmp_path: Path) -> None:
    db = tmp_path / "limit.db"
    unfinished(db, 5)

    capped = recover(db, "--limit", "3", "--batch-size", "2")

    assert capped.returncode == 0, capped.stderr
    assert batch_lines(capped.stderr) == [
        "batch 1: resumed 2 saga(s), 2 so far",
        "batch 2: resumed 1 saga(s), 3 so far",
    ]
    assert "resumed 3 saga(s)" in capped.stdout
    assert "limit reached after 2 batch(es): 2 unfinished saga(s)" in capped.stdout
    assert counts(db) == {SagaStatus.SUCCEEDED: 3, SagaStatus.RUNNING: 2}
    rest = recover(db)
    assert rest.returncode == 0, rest.stderr
    assert "resumed 2 saga(s)" in rest.stdout
    assert counts(db) == {SagaStatus.SUCCEEDED: 5}


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--limit", "0"], "invalid --limit 0: it must be at least 1"),
        (["--batch-size", "0"], "invalid --batch-size 0: it must be at least 1"),
        (["--limit", "many"], "Invalid value for '--limit'"),
    ],
)
def test_bad_sizes_are_one_error_line(
    tmp_path: Path, args: list[str], reason: str
) -> None:
    db = tmp_path / "bad.db"
    unfinished(db, 1)

    refused = recover(db, *args)

    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert reason in line
    assert counts(db) == {SagaStatus.RUNNING: 1}  # nothing ran


def _interrupted(db: Path, signals: int) -> subprocess.CompletedProcess[str]:
    """``recover`` of slow sagas, 4 at a time, sent SIGINT ``signals`` times
    once the first batch has ended."""
    cmd = [sys.executable, "-m", "sagakit.cli.main", "--db", str(db), "recover"]
    proc = subprocess.Popen(
        [*cmd, APP, "--batch-size", "4"],
        cwd=ROOT,
        env=environ(RECOVER_STEP_SECONDS="0.3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        line = proc.stderr.readline()
        while line and not line.startswith("batch 1:"):
            line = proc.stderr.readline()
        assert line.startswith("batch 1:"), "the first batch never ended"
        for _ in range(signals):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, line + err)


def test_a_signal_stops_after_the_batch_and_says_how_many_are_left(
    tmp_path: Path,
) -> None:
    db = tmp_path / "stop.db"
    unfinished(db, 20)

    stopped = _interrupted(db, signals=1)

    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr
    assert "stopping after this batch" in stopped.stderr
    found = LEFT.search(stopped.stdout)
    assert found is not None, stopped.stdout
    batches, left = int(found[1]), int(found[2])
    assert "stopped by a signal" in stopped.stdout
    assert 1 < batches < 5  # it went on with the batch under way, no further
    assert left == 20 - 4 * batches
    assert counts(db) == {SagaStatus.SUCCEEDED: 20 - left, SagaStatus.RUNNING: left}
    rest = recover(db)
    assert rest.returncode == 0, rest.stderr
    assert f"resumed {left} saga(s)" in rest.stdout


def test_a_second_signal_stops_at_once_and_nothing_is_lost(tmp_path: Path) -> None:
    db = tmp_path / "now.db"
    unfinished(db, 20)

    stopped = _interrupted(db, signals=2)

    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr
    assert "stopped at once" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    left = counts(db).get(SagaStatus.RUNNING, 0)
    assert 0 < left < 20
    rest = recover(db)  # what was cut short was released: taken at once
    assert rest.returncode == 0, rest.stderr
    assert f"resumed {left} saga(s)" in rest.stdout
    assert counts(db) == {SagaStatus.SUCCEEDED: 20}
