"""MySQL/MariaDB specifics: migrations equal schema.sql, concurrent migrators,
one round trip per write, strict values, clear connection errors,
append-only history, URL schemes."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from sagakit import SagaStatus, StoreError, open_store
from sagakit.adapters.store import open_database, open_database_sync, open_store_async
from sagakit.adapters.store.sql import migrations, schema, statements
from sagakit.ports.store import Create, InboxEntry, Save
from sagakit.testing.contracts.store import entry, make_record, message
from sagakit.testing.contracts.workflow_store import make
from tests.conftest import MySQLDatabases, mysql_admin, mysql_database_url, run_sync

asyncmy = pytest.importorskip("asyncmy")
mysql = pytest.importorskip("sagakit.adapters.store.mysql")
MySQLStore = mysql.MySQLStore

pytestmark = pytest.mark.mysql

# What a schema is made of, read from information_schema of one database.
CATALOG = {
    "columns": """
        SELECT table_name, ordinal_position, column_name, column_type,
               is_nullable, column_default, collation_name, extra,
               generation_expression
          FROM information_schema.columns WHERE table_schema = DATABASE()""",
    "indexes": """
        SELECT table_name, index_name, seq_in_index, column_name, non_unique
          FROM information_schema.statistics WHERE table_schema = DATABASE()""",
    "foreign keys": """
        SELECT table_name, constraint_name, column_name,
               referenced_table_name, referenced_column_name
          FROM information_schema.key_column_usage
         WHERE table_schema = DATABASE() AND referenced_table_name IS NOT NULL""",
    "tables": """
        SELECT table_name, engine, table_collation
          FROM information_schema.tables WHERE table_schema = DATABASE()""",
    "triggers": """
        SELECT trigger_name, event_object_table, action_timing,
               event_manipulation, action_statement
          FROM information_schema.triggers WHERE trigger_schema = DATABASE()""",
}


async def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        part: sorted(tuple(r) for r in await mysql_admin(sql, url=url))
        for part, sql in CATALOG.items()
    }


@pytest.fixture
def empty_database(mysql_databases: MySQLDatabases) -> Iterator[Callable[[], str]]:
    """Makes empty (unmigrated) databases; drops them afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"sagakit_empty_{uuid.uuid4().hex[:12]}"
        run_sync(mysql_admin(f"CREATE DATABASE {name}"))
        made.append(name)
        return mysql_database_url(name)

    yield make
    for name in made:
        run_sync(mysql_admin(f"DROP DATABASE IF EXISTS {name}"))


@pytest.fixture
async def store(mysql_url: str) -> AsyncIterator[Any]:
    store = await MySQLStore.connect(mysql_url, migrate=False)
    yield store
    await store.close()


async def test_migrations_produce_exactly_schema_sql(
    empty_database: Callable[[], str],
) -> None:
    migrated, reference = empty_database(), empty_database()
    store = await MySQLStore.connect(migrated)
    assert await store.applied_migrations() == [m.version for m in migrations("mysql")]
    await store.close()
    await mysql_admin(*statements(schema("mysql")), url=reference)
    got, want = await catalog(migrated), await catalog(reference)
    assert all(got.values()), "some part of the schema is missing"
    assert got == want


async def test_concurrent_migrators_apply_each_migration_once(
    empty_database: Callable[[], str],
) -> None:
    url = empty_database()
    stores = await asyncio.gather(
        *(MySQLStore.connect(url, migrate=False, max_size=1) for _ in range(3))
    )
    try:
        applied = await asyncio.gather(*(s.migrate() for s in stores))
        every = [m.version for m in migrations("mysql")]
        assert sorted(applied) == [[], [], every]
        assert await stores[0].applied_migrations() == every
        assert await stores[1].migrate() == []
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_migration_cut_short_runs_again(
    empty_database: Callable[[], str],
) -> None:
    """MySQL commits DDL as it goes: a migration that died part-way is run
    again whole, and its statements skip what exists."""
    url = empty_database()
    first = statements(migrations("mysql")[0].sql)[:3]
    await mysql_admin(*first, url=url)
    store = await MySQLStore.connect(url)
    try:
        assert await store.applied_migrations() == [
            m.version for m in migrations("mysql")
        ]
        await store.create(make_record("s1"), [entry("s1", "started")])
    finally:
        await store.close()


async def test_the_hooks_migration_cut_short_runs_again(
    empty_database: Callable[[], str],
) -> None:
    """0003 died after its table, one trigger and the key index: run again,
    it skips them (the index through its procedure) and adds the rest."""
    url = empty_database()
    store = await MySQLStore.connect(url)
    await store.close()
    await mysql_admin(
        "DROP TRIGGER sagakit_saga_notify_end",
        "DELETE FROM sagakit_schema_migrations WHERE version = 3",
        url=url,
    )
    store = await MySQLStore.connect(url)
    try:
        assert await store.applied_migrations() == [1, 2, 3]
        record = make_record("s1")
        await store.create(record, [entry("s1", "started")])
        await store.save(replace(record, version=2, status=SagaStatus.FAILED), 1, [])
        found = await store.notification_store().notifications()
        assert [n.event_id for n in found] == ["saga.failed:s1:2"]
        assert [r.saga_id for r in await store.find_by_key("k-none")] == []
    finally:
        await store.close()


async def test_a_write_is_one_round_trip_and_one_commit(store: Any) -> None:
    record = make_record("s1")
    before = (store.statements, store.commits)
    await store.create(record, [entry("s1", "started")], outbox=[message("m0")])
    await store.save(
        replace(record, version=2),
        1,
        [entry("s1", "a"), entry("s1", "b", result="text")],
        owner="w1",
        lease=30,
        outbox=[message("m1")],
        inbox=InboxEntry("orders", "reply-1"),
    )
    assert (store.statements, store.commits) == (before[0] + 2, before[1] + 2)
    history = await store.history("s1")
    assert [h.outcome for h in history] == ["started", "a", "b"]
    assert history[-1].result == "text"


async def test_group_writes_are_one_round_trip_and_one_commit(store: Any) -> None:
    before = (store.statements, store.commits)
    done = await store.create_many([Create(make_record(f"s{n}"), []) for n in range(3)])
    assert all(c.created for c in done)
    saves = [Save(replace(make_record(f"s{n}"), version=2), 1, []) for n in range(3)]
    assert await store.save_many(saves) == [None, None, None]
    assert (store.statements, store.commits) == (before[0] + 2, before[1] + 2)


async def test_history_is_append_only(store: Any, mysql_url: str) -> None:
    await store.create(make_record("s1"), [entry("s1", "started")])
    with pytest.raises(asyncmy.errors.OperationalError, match="append-only"):
        await mysql_admin(
            "UPDATE sagakit_step_history SET outcome = 'forged'", url=mysql_url
        )


async def test_driver_errors_become_store_errors(store: Any) -> None:
    # an attempt number no INT column holds (strict mode): the server
    # refuses the line after the saga's insert, and the transaction is
    # rolled back whole (a line of a saga that does not exist, which the
    # foreign key refused, is refused before anything is sent now)
    with pytest.raises(StoreError, match="saga s1: create failed") as caught:
        await store.create(make_record("s1"), [entry("s1", "started", attempt=2**40)])
    assert isinstance(caught.value.__cause__, asyncmy.errors.DataError)
    assert await store.unfinished() == []


async def test_values_too_long_are_refused_not_cut(store: Any) -> None:
    with pytest.raises(StoreError, match="Data too long"):
        await store.create(make_record("x" * 256), [])
    assert await store.unfinished() == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_unreachable_server_is_a_clear_one_line_error() -> None:
    port = free_port()
    with pytest.raises(StoreError) as caught:
        await open_store_async(f"mysql://root:secret@127.0.0.1:{port}/x")
    message_ = str(caught.value)
    assert message_ == (
        f"cannot connect to MySQL at 127.0.0.1:{port}/x: "
        "connection refused (is the server running?)"
    )
    assert "secret" not in message_


async def test_open_store_async_picks_the_adapter(mysql_url: str) -> None:
    for url in (mysql_url, mysql_url.replace("mysql://", "mariadb://")):
        store = await open_store_async(url)
        try:
            assert isinstance(store, MySQLStore)
            assert await store.unfinished() == []
        finally:
            await store.close()
    with pytest.raises(StoreError, match="open_store_async"):
        open_store(mysql_url)
    with pytest.raises(StoreError, match="unknown MySQL URL parameter"):
        await open_store_async(f"{mysql_url}?ssl=1")


async def test_open_database_shares_one_pool(mysql_url: str) -> None:
    async with await open_database(mysql_url) as db:
        assert isinstance(db.sagas, MySQLStore)
        database = db.sagas.database
        assert db.events.database is database  # type: ignore[attr-defined]
        assert db.workflows is not None
        assert db.workflows.database is database  # type: ignore[attr-defined]
        await db.sagas.create(make_record("s1"), [])
        await db.workflows.create(make("w1"), [])
        assert await db.events.record_inbox("svc", "m1", None)
        assert await db.sagas.inbox_reply("svc", "m1") == b""
    with pytest.raises(StoreError, match="open_database"):
        open_database_sync(mysql_url)
