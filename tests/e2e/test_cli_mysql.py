"""The CLI and the dashboard on MySQL: ``--db mysql://`` (and
``$SAGAKIT_DATABASE_URL``) wherever a store URL is read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sagakit import Orchestrator, SagaStatus
from sagakit.adapters.store import open_store_async
from sagakit.adapters.store.sql import migrations
from sagakit.dashboard import create_app
from sagakit.examples.trip import happy_trip, trip_saga
from tests.conftest import MySQLDatabases, mysql_admin, mysql_database_url, run_sync
from tests.e2e.test_cli import assert_one_error_line, sagakit

pytestmark = [pytest.mark.e2e, pytest.mark.mysql]


@pytest.fixture
def empty_url(mysql_databases: MySQLDatabases) -> Iterator[str]:
    """An empty (unmigrated) database, dropped afterwards."""
    name = f"sagakit_cli_{uuid.uuid4().hex[:10]}"
    run_sync(mysql_admin(f"CREATE DATABASE {name}"))
    yield mysql_database_url(name).replace("mysql://", "mariadb://")
    run_sync(mysql_admin(f"DROP DATABASE IF EXISTS {name}"))


def test_migrate_on_an_empty_database(empty_url: str, tmp_path: Path) -> None:
    before = sagakit("--db", empty_url, "db", "status", cwd=tmp_path)
    assert "0001_initial  pending" in before.stdout, before.stderr
    assert "mysql: 0 applied" in before.stdout
    migrated = sagakit("--db", empty_url, "migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert f"applied {len(migrations('mysql'))} migration(s)" in migrated.stdout
    from_env = sagakit(
        "db", "status", cwd=tmp_path, env={"SAGAKIT_DATABASE_URL": empty_url}
    )
    assert f"mysql: {len(migrations('mysql'))} applied, 0 pending" in from_env.stdout, (
        from_env.stderr
    )


def test_schema_prints_schema_sql(tmp_path: Path) -> None:
    shown = sagakit("db", "schema", "--dialect", "mysql", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "CREATE TABLE IF NOT EXISTS sagakit_saga (" in shown.stdout


def test_unreachable_mysql_is_one_error_line(tmp_path: Path) -> None:
    result = sagakit("--db", "mysql://root@127.0.0.1:1/x", "list", cwd=tmp_path)
    assert_one_error_line(result)
    assert "cannot connect to MySQL at 127.0.0.1:1/x" in result.stderr


async def _trip(url: str) -> str:
    store = await open_store_async(url)
    try:
        result = await Orchestrator(store, [trip_saga]).run(
            trip_saga, happy_trip(), saga_id="trip-mysql-1"
        )
        assert result.status is SagaStatus.SUCCEEDED
        return result.saga_id
    finally:
        await store.close()


def test_list_show_and_dashboard_read_the_store(mysql_url: str, tmp_path: Path) -> None:
    saga_id = asyncio.run(_trip(mysql_url))
    listed = sagakit("--db", mysql_url, "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert saga_id in listed.stdout
    shown = sagakit("--db", mysql_url, "show", "trip-mysql", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "succeeded" in shown.stdout

    async def dashboard() -> str:
        store = await open_store_async(mysql_url)
        try:
            transport = httpx.ASGITransport(app=create_app(store))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                page = await client.get(f"/sagas/{saga_id}")
                assert page.status_code == 200
                flows = await client.get("/workflows")
                assert flows.status_code == 200
                return page.text
        finally:
            await store.close()

    assert saga_id in asyncio.run(dashboard())
