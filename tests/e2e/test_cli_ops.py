"""Operator commands: db migrate/status/schema, migrate, worker."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from sagakit import Orchestrator, SagaStatus, SQLiteStore
from sagakit.adapters.store.postgres import PostgresStore
from sagakit.adapters.store.sql import migrations
from sagakit.examples.trip import fully_booked_trip, happy_trip, trip_saga
from tests.conftest import admin, database_url, run_sync
from tests.e2e.test_cli import assert_one_error_line, sagakit

pytestmark = pytest.mark.e2e


def test_sqlite_status_migrate_status(tmp_path: Path) -> None:
    db = str(tmp_path / "fresh.db")
    missing = sagakit("--db", db, "db", "status", cwd=tmp_path)
    assert_one_error_line(missing)  # read-only: creates no database
    assert "no saga database" in missing.stderr
    assert not Path(db).exists()
    sqlite3.connect(db).close()  # an empty database: every migration pending
    before = sagakit("--db", db, "db", "status", cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    assert "0001_initial  pending" in before.stdout
    assert "0 applied" in before.stdout
    migrated = sagakit("--db", db, "migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert f"applied {len(migrations('sqlite'))} migration(s)" in migrated.stdout
    again = sagakit("--db", db, "db", "migrate", cwd=tmp_path)
    assert "is up to date" in again.stdout
    after = sagakit("--db", db, "db", "status", cwd=tmp_path)
    assert "0 pending" in after.stdout


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_schema_prints_schema_sql(tmp_path: Path, dialect: str) -> None:
    shown = sagakit("db", "schema", "--dialect", dialect, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "CREATE TABLE sagakit_saga" in shown.stdout


def test_schema_of_unknown_dialect_is_one_error_line(tmp_path: Path) -> None:
    assert_one_error_line(sagakit("db", "schema", "--dialect", "oracle", cwd=tmp_path))


def test_memory_store_has_no_schema(tmp_path: Path) -> None:
    assert_one_error_line(sagakit("--db", "memory://", "db", "status", cwd=tmp_path))


@pytest.mark.postgres
def test_postgres_migrate_on_an_empty_database(
    pg_template: str, tmp_path: Path
) -> None:
    name = f"sagakit_cli_{uuid.uuid4().hex[:10]}"
    run_sync(admin(f"CREATE DATABASE {name}"))
    url = database_url(name)
    try:
        before = sagakit("--db", url, "db", "status", cwd=tmp_path)
        assert "postgres: 0 applied" in before.stdout, before.stderr
        migrated = sagakit("--db", url, "migrate", cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        count = len(migrations("postgres"))
        assert f"applied {count} migration(s)" in migrated.stdout
        after = sagakit("--db", url, "db", "status", cwd=tmp_path)
        assert "0 pending" in after.stdout
    finally:
        run_sync(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_unreachable_postgres_is_one_error_line(tmp_path: Path) -> None:
    result = sagakit(
        "--db", "postgresql://postgres@127.0.0.1:1/x", "list", cwd=tmp_path
    )
    assert_one_error_line(result)
    assert "cannot connect to PostgreSQL" in result.stderr


def test_worker_runs_submitted_sagas_until_idle(tmp_path: Path) -> None:
    db = tmp_path / "work.db"

    async def submit() -> list[str]:
        orch = Orchestrator(SQLiteStore(db), [trip_saga])
        return [
            await orch.submit(trip_saga, happy_trip() if i % 2 else fully_booked_trip())
            for i in range(6)
        ]

    ids = asyncio.run(submit())
    done = sagakit(
        "--db", str(db), "worker", "sagakit.examples.trip", "--until-idle", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "claiming 6 saga(s)" in done.stderr

    async def statuses() -> list[SagaStatus]:
        store = SQLiteStore(db)
        return [(await store.get(i)).status for i in ids]

    got = asyncio.run(statuses())
    assert got == [
        SagaStatus.COMPENSATED if i % 2 == 0 else SagaStatus.SUCCEEDED for i in range(6)
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["worker", "sagakit.examples.trip", "--lease", "0"],
        ["worker", "sagakit.examples.trip", "--max-active", "0"],
        ["worker", "no.such.module"],
    ],
)
def test_worker_bad_input_is_one_error_line(tmp_path: Path, args: list[str]) -> None:
    assert_one_error_line(sagakit("--db", str(tmp_path / "x.db"), *args, cwd=tmp_path))


def peak_connections(url: str, *command: str, cwd: Path) -> tuple[int, int]:
    """Run ``sagakit --db url *command`` to its end; the most client
    connections the server saw on ``url``'s database meanwhile, and the
    command's exit status."""

    async def watch() -> tuple[int, int]:
        conn = await asyncpg.connect(url)
        try:
            process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "sagakit.cli.main", "--db", url, *command),
                cwd=cwd,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            peak = 0
            while process.returncode is None:
                peak = max(peak, await conn.fetchval(COUNT_OTHERS))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 0.005)
            return peak, process.returncode
        finally:
            await conn.close()

    return run_sync(watch())


COUNT_OTHERS = """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()"""


@pytest.mark.postgres
def test_db_pool_bounds_a_workers_connections(tmp_path: Path, pg_url: str) -> None:
    async def submit(count: int) -> list[str]:
        store = await PostgresStore.connect(pg_url, max_size=2)
        try:
            orch = Orchestrator(store, [trip_saga])
            return await asyncio.gather(
                *(orch.submit(trip_saga, happy_trip()) for _ in range(count))
            )
        finally:
            await store.close()

    async def statuses(ids: list[str]) -> set[SagaStatus]:
        store = await PostgresStore.connect(pg_url, max_size=2)
        try:
            return {(await store.get(saga_id)).status for saga_id in ids}
        finally:
            await store.close()

    ids = run_sync(submit(300))
    worker = ("worker", "sagakit.examples.trip", "--until-idle", "--db-pool", "2")
    peak, status = peak_connections(pg_url, *worker, cwd=tmp_path)
    assert status == 0
    assert 1 <= peak <= 2  # the default, 10, lets it open 3 here
    assert run_sync(statuses(ids)) == {SagaStatus.SUCCEEDED}
