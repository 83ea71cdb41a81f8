"""Poison sagas in real processes: a step that ends its process every time
(``os._exit``) is run by ``--max-crash-attempts`` processes (2 here), then its
saga is parked; a plain restart leaves it parked; an operator's unpause runs
it again. On SQLite, PostgreSQL and MySQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sagakit.adapters.store import open_store_async
from sagakit.ports.store import SagaRecord
from tests.e2e.poison_app import CRASH_CODE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
APP = "tests.e2e.poison_app"
SAGA_ID = "poison-1"


def run(db: str, runs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, "POISON_RUNS": str(runs)},
    )


def sagakit(db: str, runs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(db, runs, sys.executable, "-m", "sagakit.cli.main", "--db", db, *args)


def worker(db: str, runs: Path) -> subprocess.CompletedProcess[str]:
    return sagakit(
        db, runs, "worker", APP, "--until-idle", "--lease", "5",
        "--max-crash-attempts", "2",
    )  # fmt: skip


async def _record(db: str) -> SagaRecord:
    store = await open_store_async(db)
    try:
        return await store.get(SAGA_ID)
    finally:
        await store.close()


def record(db: str) -> SagaRecord:
    return asyncio.run(_record(db))


def boom_runs(runs: Path) -> int:
    return len(runs.read_text().splitlines())


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "poison.db")
    url = "pg_url" if request.param == "postgres" else "mysql_url"
    return str(request.getfixturevalue(url))


def test_poison_saga_is_parked_and_an_unpause_runs_it(db: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    Path(f"{runs}.poison").touch()
    started = run(db, runs, sys.executable, "-m", APP, db, "start", SAGA_ID)
    assert started.returncode == CRASH_CODE, started.stderr
    assert boom_runs(runs) == 1
    # the worker that takes it over dies in the step too: the 2nd run
    crashed = worker(db, runs)
    assert crashed.returncode == CRASH_CODE, crashed.stderr
    assert boom_runs(runs) == 2
    # the 2nd takeover finds it in flight a 2nd time: parked, not run
    parked = worker(db, runs)
    assert parked.returncode == 0, parked.stderr
    assert boom_runs(runs) == 2
    rec = record(db)
    assert rec.status.value == "running"
    assert rec.state.paused
    assert rec.state.parked is not None
    assert "'boom'" in rec.state.parked
    assert rec.state.step("boom").crashes == 2
    # a plain restart leaves it parked
    again = worker(db, runs)
    assert again.returncode == 0, again.stderr
    assert boom_runs(runs) == 2
    assert record(db).state.parked is not None
    shown = sagakit(db, runs, "show", SAGA_ID)
    assert shown.returncode == 0, shown.stderr
    assert "parked" in shown.stdout, shown.stdout
    # the operator fixed the cause, and unpauses it: it runs once more, and ends
    Path(f"{runs}.poison").unlink()
    unpaused = sagakit(
        db, runs, "unpause", SAGA_ID, "--sagas", APP, "--as", "ana", "--reason", "fixed"
    )
    assert unpaused.returncode == 0, unpaused.stdout + unpaused.stderr
    done = worker(db, runs)
    assert done.returncode == 0, done.stderr
    assert boom_runs(runs) == 3
    final = record(db)
    assert final.status.value == "succeeded", final.state
    # the unpause gave it its budget back; the worker's claim of the step the
    # unpause issued took it from nobody (the CLI holds no lease): no crash
    assert final.state.parked is None
    assert final.state.step("boom").crashes == 0
