"""PostgreSQL specifics: migrations equal schema.sql, concurrent migrators,
one round trip per save, clear connection errors, append-only history."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from sagakit import StoreError, open_store
from sagakit.adapters.store import open_store_async
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.store.postgres import PostgresStore
from sagakit.adapters.store.sql import migrations, queries, schema
from sagakit.errors import DuplicateMessage, SagaAlreadyExists
from sagakit.ports.store import InboxEntry
from sagakit.testing.contracts.store import entry, make_record, message
from tests.conftest import admin, database_url, run_sync

pytestmark = pytest.mark.postgres

# What a schema is made of, read from the catalogs of the public schema.
CATALOG = {
    "columns": """
        SELECT table_name, ordinal_position, column_name, data_type, is_nullable,
               column_default, is_identity, identity_generation, collation_name
          FROM information_schema.columns WHERE table_schema = 'public'""",
    "indexes": """
        SELECT tablename, indexname, indexdef
          FROM pg_indexes WHERE schemaname = 'public'""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
          FROM pg_trigger WHERE NOT tgisinternal""",
    "storage": """
        SELECT relname, reloptions
          FROM pg_class WHERE relnamespace = 'public'::regnamespace
           AND reloptions IS NOT NULL""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid)
          FROM pg_proc WHERE pronamespace = 'public'::regnamespace""",
}


async def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(url)
    try:
        return {
            part: sorted(tuple(r) for r in await conn.fetch(sql))
            for part, sql in CATALOG.items()
        }
    finally:
        await conn.close()


@pytest.fixture
def empty_database(pg_template: str) -> Iterator[Callable[[], str]]:
    """Makes empty (unmigrated) databases; drops them afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"sagakit_empty_{uuid.uuid4().hex[:12]}"
        run_sync(admin(f"CREATE DATABASE {name}"))
        made.append(name)
        return database_url(name)

    yield make
    for name in made:
        run_sync(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.connect(pg_url, migrate=False)
    yield store
    await store.close()


async def test_migrations_produce_exactly_schema_sql(
    empty_database: Callable[[], str],
) -> None:
    migrated, reference = empty_database(), empty_database()
    store = await PostgresStore.connect(migrated)
    assert await store.applied_migrations() == [
        m.version for m in migrations("postgres")
    ]
    await store.close()
    await admin(schema("postgres"), url=reference)
    got, want = await catalog(migrated), await catalog(reference)
    assert all(got.values()), "some part of the schema is missing"
    assert got == want


async def test_concurrent_migrators_apply_each_migration_once(
    empty_database: Callable[[], str],
) -> None:
    url = empty_database()
    stores = await asyncio.gather(
        *(PostgresStore.connect(url, migrate=False, max_size=1) for _ in range(3))
    )
    try:
        applied = await asyncio.gather(*(s.migrate() for s in stores))
        every = [m.version for m in migrations("postgres")]
        assert sorted(applied) == [[], [], every]
        assert await stores[0].applied_migrations() == every
        assert await stores[1].migrate() == []
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_every_named_query_prepares(store: PostgresStore) -> None:
    async with store.database.pool.acquire() as conn:
        for name, sql in queries("postgres").items():
            try:
                await conn.prepare(sql)
            except asyncpg.PostgresError as exc:  # pragma: no cover - reported
                pytest.fail(f"query {name!r} does not prepare: {exc}")


class CountingPool:
    """Wraps the store's pool and records every call made on it."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.pool, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return counted


class CountingLane:
    """Wraps the store's connection lane; records every call on a connection."""

    def __init__(self, lane: Any) -> None:
        self.lane = lane
        self.calls: list[str] = []

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[CountingPool]:
        async with self.lane.connection() as conn:
            counting = CountingPool(conn)
            yield counting
            self.calls.extend(counting.calls)

    async def close(self) -> None:
        await self.lane.close()


def counting(store: PostgresStore) -> CountingPool | CountingLane:
    """Count what the store sends, through whichever path it uses."""
    database = store.database
    if database._lane is not None:
        lane = CountingLane(database._lane)
        database._lane = lane  # type: ignore[assignment]
        return lane
    pool = CountingPool(database._pool)
    database._pool = pool  # type: ignore[assignment]
    return pool


async def test_save_is_one_statement_and_one_commit(store: PostgresStore) -> None:
    record = make_record("s1")
    await store.create(record, [entry("s1", "started")])
    await store.save(replace(record, version=2), 1, [])  # prepares the statement
    counter = counting(store)
    before = (store.statements, store.commits)
    await store.save(
        replace(record, version=3),
        2,
        [entry("s1", "a"), entry("s1", "b"), entry("s1", "c", result="text")],
        owner="w1",
        lease=30,
    )
    assert counter.calls == ["fetchrow"]
    assert (store.statements, store.commits) == (before[0] + 1, before[1] + 1)
    history = await store.history("s1")
    assert [h.outcome for h in history] == ["started", "a", "b", "c"]
    assert history[-1].result == "text"


async def test_save_with_outbox_and_inbox_is_one_statement(
    store: PostgresStore,
) -> None:
    record = make_record("s1")
    await store.create(record, [], outbox=[message("m0")])
    counter = counting(store)
    before = (store.statements, store.commits)
    await store.save(
        replace(record, version=2),
        1,
        [entry("s1", "a")],
        outbox=[message("m1"), message("m2")],
        inbox=InboxEntry("orders", "reply-1"),
    )
    with pytest.raises(DuplicateMessage):
        await store.save(
            replace(record, version=3),
            2,
            [],
            inbox=InboxEntry("orders", "reply-1"),
        )
    assert counter.calls == ["fetchrow", "fetchrow"]
    assert (store.statements, store.commits) == (before[0] + 2, before[1] + 1)
    claimed = await store.claim_outbox("relay", lease=60)
    assert [m.message_id for m in claimed] == ["m0", "m1", "m2"]


async def test_outbox_holds_use_the_database_clock(store: PostgresStore) -> None:
    await store.create(make_record("s1"), [], outbox=[message("m1")])
    await store.claim_outbox("relay", lease=60)
    async with store.database.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT locked_by, locked_until"
            "       - extract(epoch FROM clock_timestamp())::float8 AS left"
            "  FROM sagakit_outbox WHERE message_id = 'm1'"
        )
    assert row["locked_by"] == "relay"
    assert 55 < row["left"] <= 60


@pytest.mark.parametrize(
    ("query", "args", "index"),
    [
        ("due_deadlines", (["order"], 100), "sagakit_saga_deadline"),
        ("claim_outbox", ("relay", 60.0, 100), "sagakit_outbox_available"),
    ],
)
async def test_messaging_queries_use_their_index(
    store: PostgresStore, query: str, args: tuple[Any, ...], index: str
) -> None:
    """With seqscan off and the table's other indexes dropped (the tables are
    empty: any index costs the same), the plan still finds the index: it is
    usable by the query as written (partial-index predicate included). The
    transaction is rolled back."""
    table = "sagakit_saga" if query == "due_deadlines" else "sagakit_outbox"
    async with store.database.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute("SET LOCAL enable_seqscan = off")
            for (other,) in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE tablename = $1"
                " AND indexname <> $2 AND indexname NOT LIKE '%_pkey'",
                table,
                index,
            ):
                await conn.execute(f'DROP INDEX "{other}"')
            rows = await conn.fetch(f"EXPLAIN {queries('postgres')[query]}", *args)
        finally:
            await transaction.rollback()
    plan = [r[0] for r in rows]
    assert any(index in line for line in plan), "\n".join(plan)


@pytest.mark.parametrize(
    ("query", "args", "index"),
    [
        (
            "workflow_claim",
            ("a", "w", 1.0, 30.0, ["s"], 100, 1, "fp"),
            "sagakit_workflow_wake",
        ),
        ("workflow_next_due", ("a", ["s"], 1, "fp"), "sagakit_workflow_wake"),
        (
            "workflow_list_of_app_in_status",
            ("running", "a", 500, math.inf),
            "sagakit_workflow_status",
        ),
    ],
)
async def test_workflow_timer_queries_search_one_range_of_an_index(
    store: PostgresStore, query: str, args: tuple[Any, ...], index: str
) -> None:
    """The claim, the next due time and the idle worker's listing read one
    range of an index in order, in the generic plan a prepared statement
    ends up with too (seqscan off: the tables are empty)."""
    async with store.database.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        rows = await conn.fetch(f"EXPLAIN {queries('postgres')[query]}", *args)
    plan = [r[0] for r in rows]
    scans = (f"Index Scan using {index} ", f"Index Scan Backward using {index} ")
    assert any(scan in line for line in plan for scan in scans), "\n".join(plan)
    assert not any(line.strip().startswith("->  Sort") for line in plan), plan


async def test_sequential_save_timing(store: PostgresStore) -> None:
    """Recorded, not asserted: 1000 sequential saves against this server."""
    record = make_record("timed")
    await store.create(record, [])
    n = 1000
    start = time.perf_counter()
    for version in range(2, n + 2):
        await store.save(
            replace(record, version=version), version - 1, [entry("timed", "x")]
        )
    elapsed = time.perf_counter() - start
    print(f"\n{n} sequential saves: {elapsed:.3f}s, {elapsed / n * 1e6:.0f} us/save")
    assert (await store.get("timed")).version == n + 1


async def test_leases_use_the_database_clock(store: PostgresStore) -> None:
    await store.create(make_record("s1"), [])
    await store.claim("w1", ["order"], lease=60)
    async with store.database.pool.acquire() as conn:
        left = await conn.fetchval(
            "SELECT lease_until - extract(epoch FROM clock_timestamp())::float8"
            "  FROM sagakit_saga WHERE saga_id = 's1'"
        )
    assert 55 < left <= 60


async def test_history_is_append_only(store: PostgresStore, pg_url: str) -> None:
    await store.create(make_record("s1"), [entry("s1", "started")])
    conn = await asyncpg.connect(pg_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE sagakit_step_history SET outcome = 'forged'")
    finally:
        await conn.close()


async def test_driver_errors_become_store_errors(store: PostgresStore) -> None:
    # an attempt number no integer column holds: the server refuses the line
    with pytest.raises(StoreError, match="saga s1: create failed") as caught:
        await store.create(make_record("s1"), [entry("s1", "started", attempt=2**40)])
    assert isinstance(caught.value.__cause__, asyncpg.NumericValueOutOfRangeError)


async def test_a_line_of_another_saga_is_refused_and_nothing_written(
    store: PostgresStore,
) -> None:
    # no foreign key checks each line (0018): the statement itself refuses a
    # line that is not of the saga it writes, whether that saga exists or not
    await store.create(make_record("s2"), [])
    for ghost in ("ghost", "s2"):
        with pytest.raises(StoreError, match="saga s1: create failed") as caught:
            await store.create(make_record("s1"), [entry(ghost, "started")])
        assert isinstance(caught.value.__cause__, asyncpg.NotNullViolationError)
    await store.create(make_record("s1"), [entry("s1", "started")])
    with pytest.raises(StoreError, match="saga s1: save failed"):
        await store.save(
            replace(make_record("s1"), version=2), 1, [entry("ghost", "done")]
        )
    assert (await store.get("s1")).version == 1
    assert [h.saga_id for h in await store.history("s1")] == ["s1"]
    assert await store.history("s2") == []
    assert await store.history("ghost") == []


async def test_a_taken_saga_id_says_the_status_and_writes_nothing(
    store: PostgresStore,
) -> None:
    """The insert skips a taken id (one create of a pipelined batch must not
    fail the others); the store then reads which saga holds it."""
    await store.create(make_record("s1"), [entry("s1", "started")])
    with pytest.raises(SagaAlreadyExists, match="saga s1") as caught:
        await store.create(make_record("s1", key="k"), [entry("s1", "again")])
    assert caught.value.status == "running"
    assert [h.outcome for h in await store.history("s1")] == ["started"]
    # the refused create took no idempotency key either
    assert (await store.create(make_record("s2", key="k"), [])).created


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_opening_connects_once_and_the_pool_when_a_transaction_needs_it(
    pg_url: str,
) -> None:
    # a read-only command (sagakit list) opens one server connection, not two
    store = await PostgresStore.connect(pg_url, migrate=False)
    try:
        assert store.database.pool.get_size() == 0
        assert await store.list_sagas(limit=5) is not None  # on the lane
        async with store.database.transaction("a test's transaction") as conn:
            assert await conn.fetchval("SELECT 1") == 1
        assert store.database.pool.get_size() == 1  # connected when needed
    finally:
        await store.close()


async def test_unreachable_server_is_a_clear_one_line_error() -> None:
    port = free_port()
    with pytest.raises(StoreError) as caught:
        await open_store_async(f"postgresql://postgres:secret@127.0.0.1:{port}/x")
    message = str(caught.value)
    assert message == (
        f"cannot connect to PostgreSQL at 127.0.0.1:{port}/x: "
        "connection refused (is the server running?)"
    )
    assert "secret" not in message
    assert isinstance(caught.value.__cause__, OSError)


async def test_open_store_async_picks_the_adapter(pg_url: str) -> None:
    store = await open_store_async(pg_url.replace("postgresql://", "postgres://"))
    try:
        assert isinstance(store, PostgresStore)
        await store.create(make_record("s1"), [])
        assert (await store.get("s1")).saga_id == "s1"
    finally:
        await store.close()
    assert isinstance(await open_store_async("memory://"), InMemoryStore)
    with pytest.raises(StoreError, match="open_store_async"):
        open_store(pg_url)


async def test_open_database_shares_one_pool(pg_url: str) -> None:
    from sagakit.adapters.store import open_database  # noqa: PLC0415
    from sagakit.testing.contracts.workflow_store import make  # noqa: PLC0415

    async with await open_database(pg_url) as db:
        assert isinstance(db.sagas, PostgresStore)
        database = db.sagas.database
        assert db.events.database is database  # type: ignore[attr-defined]
        assert db.workflows is not None
        assert db.workflows.database is database  # type: ignore[attr-defined]
        await db.sagas.create(make_record("s1"), [])
        await db.workflows.create(make("w1"), [])
        assert await db.events.record_inbox("svc", "m1", None)
        assert await db.sagas.inbox_reply("svc", "m1") == b""
    from sagakit.adapters.store import open_database_sync  # noqa: PLC0415

    with pytest.raises(StoreError, match="open_database"):
        open_database_sync(pg_url)
