"""Worker processes on PostgreSQL (or MySQL) share parents and their
sub-sagas; one is SIGKILLed while children run, and the others finish every
family."""

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

from sagakit import SagaStatus
from sagakit.adapters.store import open_store_async

APP = Path(__file__).with_name("subsaga_worker_app.py")
ROOT = APP.parents[2]
ORDERS = 12
FAIL_EVERY = 4  # subsaga_worker_app: index % 4 == 3 fails at ship
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(
    params=[
        pytest.param("pg_url", marks=pytest.mark.postgres, id="postgres"),
        pytest.param("mysql_url", marks=pytest.mark.mysql, id="mysql"),
    ]
)
def server_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


def _run(url: str, effects: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, str(APP), url, str(effects), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def _lines(effects: Path) -> list[str]:
    return effects.read_text().splitlines() if effects.exists() else []


async def _statuses(url: str) -> dict[str, SagaStatus]:
    store = await open_store_async(url)
    try:
        records = await store.list_sagas(limit=1000)
        return {r.saga_id: r.status for r in records}
    finally:
        await store.close()


def test_a_worker_killed_while_children_run(server_url: str, tmp_path: Path) -> None:
    effects = tmp_path / "effects.txt"
    submit = _run(
        server_url, effects, "submit", str(ORDERS), log=tmp_path / "submit.log"
    )
    assert submit.wait(60) == 0, (tmp_path / "submit.log").read_text()[-2000:]

    victim = _run(server_url, effects, "worker", log=tmp_path / "victim.log")
    other = _run(server_url, effects, "worker", log=tmp_path / "other.log")
    started = [victim, other]
    try:
        deadline = time.monotonic() + 60
        while not any(line.endswith(" charge") for line in _lines(effects)):
            assert victim.poll() is None, (tmp_path / "victim.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "no child ever charged"
            time.sleep(0.01)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        late = _run(server_url, effects, "worker", log=tmp_path / "late.log")
        started.append(late)
        for proc, name in ((other, "other"), (late, "late")):
            assert proc.wait(90) == 0, (tmp_path / f"{name}.log").read_text()[-2000:]
    finally:  # a failed check must not leave workers behind
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    statuses = asyncio.run(_statuses(server_url))
    for i in range(ORDERS):
        expected = (
            SagaStatus.COMPENSATED
            if i % FAIL_EVERY == FAIL_EVERY - 1
            else SagaStatus.SUCCEEDED
        )
        assert statuses[f"order-{i}"] is expected, i
        assert statuses[f"order-{i}/pay"] is expected, i
    assert len(statuses) == 2 * ORDERS  # one child each, never two
    counts = collections.Counter(_lines(effects))
    for i in range(ORDERS):
        done = ["reserve", "authorize", "charge"]
        if i % FAIL_EVERY == FAIL_EVERY - 1:
            done += ["undo charge", "undo authorize", "undo reserve"]
        else:
            done.append("ship")
        for what in done:
            # at least once; twice only for the step in flight at the kill
            assert 1 <= counts[f"order-{i} {what}"] <= 2, (i, what, counts)
