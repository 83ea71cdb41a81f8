"""SIGKILL the process whose saga holds a lock: the lock stays with the saga
(not the process), the sagas queued behind it stay queued, and another
process resumes it, finishes it and releases the lock; then the others take
the key one at a time."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sagakit import SagaStatus, SQLiteStore
from sagakit.ports.locks import LockTable

APP = Path(__file__).with_name("lock_app.py")
ROOT = APP.parents[2]
SAGAS = 4
pytestmark = pytest.mark.e2e


async def _read(db: Path) -> tuple[LockTable, dict[str, SagaStatus]]:
    store = SQLiteStore(db)
    try:
        table = await store.list_locks()
        ids = [f"lock-{i}" for i in range(SAGAS)]
        statuses = {i: (await store.get(i)).status for i in ids}
        return table, statuses
    finally:
        await store.close()


def test_a_killed_holder_keeps_its_lock_until_another_process_ends_it(
    tmp_path: Path,
) -> None:
    db, effects = tmp_path / "locks.db", tmp_path / "effects.txt"
    log = tmp_path / "start.log"
    with log.open("wb") as sink:
        holder = subprocess.Popen(
            [sys.executable, str(APP), str(db), str(effects), "start", str(SAGAS)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    ready = Path(f"{effects}.ready")
    deadline = time.monotonic() + 30
    while not ready.exists():
        if holder.poll() is not None or time.monotonic() > deadline:
            holder.kill()
            pytest.fail(f"the holder never got ready: {log.read_text()[-2000:]}")
        time.sleep(0.02)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)

    table, statuses = asyncio.run(_read(db))
    assert [(h.key, h.saga_id) for h in table.holders] == [("seat:1A", "lock-0")]
    assert [w.saga_id for w in table.waiters] == [f"lock-{i}" for i in range(1, SAGAS)]
    assert set(statuses.values()) == {SagaStatus.RUNNING}

    done = subprocess.run(
        [sys.executable, str(APP), str(db), str(effects), "recover"],
        capture_output=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    table, statuses = asyncio.run(_read(db))
    assert table == ([], [])
    assert set(statuses.values()) == {SagaStatus.SUCCEEDED}

    lines = [line.split() for line in effects.read_text().splitlines()]
    dead = {pid for _, _, pid in lines[:1]}
    # the holder's step ran again in the new process (it never finished), and
    # each saga held the seat alone: hold ... finish, never interleaved
    assert lines[0][:2] == ["lock-0", "hold"]
    after = [(saga, step) for saga, step, pid in lines if pid not in dead]
    assert after[:2] == [("lock-0", "hold"), ("lock-0", "finish")]
    for n in range(0, len(after), 2):
        saga, step = after[n]
        assert (step, after[n + 1]) == ("hold", (saga, "finish"))
    assert sorted(s for s, step in after if step == "finish") == [
        f"lock-{i}" for i in range(SAGAS)
    ]
