"""PostgreSQL specifics of migrations 0012 and 0015. The number of ended
sagas per name and status is kept by triggers that append changes, folded
into totals now and then: the counts stay exact whoever writes, concurrently
or not, in small or huge transactions; no writer waits for another or
updates a row another may update. Saga ids compare byte by byte whatever the
database's collation, so that an id prefix is a range of the primary key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest

from sagakit import SagaStatus
from sagakit.adapters.store.postgres import PostgresStore
from sagakit.testing.contracts.store import make_record
from tests.conftest import admin, database_url, run_sync

pytestmark = pytest.mark.postgres


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    """Two stores on one database, each with its own connections."""
    opened = [await PostgresStore.connect(pg_url, max_size=8) for _ in range(2)]
    yield opened
    for store in opened:
        await store.close()


async def scanned(
    store: PostgresStore, name: str | None = None
) -> dict[SagaStatus, int]:
    """The counts read from every saga (the query of schemas before 0012)."""
    rows = await store.database.fetch("scan", "count_by_status_scan", name)
    return {SagaStatus(r[0]): int(r[1]) for r in rows}


async def test_concurrent_writers_keep_the_counts_exact(
    stores: list[PostgresStore],
) -> None:
    async def write(store: PostgresStore, first: int) -> None:
        records = [make_record(f"s{n:04d}") for n in range(first, first + 150)]
        await asyncio.gather(*(store.create(r, []) for r in records))
        ended = [
            replace(r, version=2, status=SagaStatus.SUCCEEDED) for r in records[::2]
        ]
        await asyncio.gather(*(store.save(r, 1, []) for r in ended))

    await asyncio.gather(*(write(s, n * 150) for n, s in enumerate(stores)))

    expected = {SagaStatus.RUNNING: 150, SagaStatus.SUCCEEDED: 150}
    assert await scanned(stores[0]) == expected
    for store in stores:
        assert await store.count_by_status() == expected
        assert await store.count_by_status("order") == expected


async def test_a_writer_never_waits_for_another_to_count(pg_url: str) -> None:
    """Two transactions end sagas of one name at once: neither waits for
    the other (a lock wait would run into lock_timeout); both counts add
    up, and no total was written: each change is a row of its own."""
    import asyncpg  # noqa: PLC0415 - the PostgreSQL tests only

    store = await PostgresStore.connect(pg_url)
    first: Any = await asyncpg.connect(pg_url)
    second: Any = await asyncpg.connect(pg_url)
    end = "UPDATE sagakit_saga SET status = 'succeeded' WHERE saga_id = $1"
    try:
        for saga_id in ("a", "b", "c"):
            await store.create(make_record(saga_id), [])
        await store.save(
            replace(make_record("c"), version=2, status=SagaStatus.FAILED), 1, []
        )
        one, two = first.transaction(), second.transaction()
        await one.start()
        await two.start()
        await first.execute(end, "a")
        await second.execute("SET LOCAL lock_timeout = '200ms'")
        await second.execute(end, "b")
        await second.execute(end, "c")  # and (order, failed) goes down
        await two.commit()
        await one.commit()
        changes = await first.fetch(
            "SELECT status, change FROM sagakit_saga_count_change ORDER BY id"
        )
        assert [tuple(c) for c in changes] == [
            *[("running", 1)] * 3,  # created
            *[("running", -1), ("failed", 1)],  # c failed
            *[("running", -1), ("succeeded", 1)],  # a, by the first
            *[("running", -1), ("succeeded", 1)],  # b, by the second
            *[("failed", -1), ("succeeded", 1)],  # c, by the second
        ]
        assert await first.fetchval("SELECT count(*) FROM sagakit_saga_count") == 0
        expected = {SagaStatus.SUCCEEDED: 3}
        assert await scanned(store) == expected
        assert await store.count_by_status() == expected
        assert await store.count_by_status("order") == expected
    finally:
        await first.close()
        await second.close()
        await store.close()


_MANY = """
INSERT INTO sagakit_saga (saga_id, saga_name, status, version, context, state,
                          created_at, updated_at)
SELECT $1 || i, CASE WHEN i % 3 = 0 THEN 'refund' ELSE 'order' END, $2, 1,
       '{}', '{}', i, i
  FROM generate_series(1, $3::integer) AS i
"""


async def test_a_transaction_ending_thousands_updates_no_total_per_saga(
    pg_url: str,
) -> None:
    """3,000 sagas end in one transaction, one statement each (a group
    commit, a batch job): their changes are appended, and the totals are
    written once at most (one fold per transaction), not once per saga --
    a row updated again and again in one transaction gets slower each time."""
    import asyncpg  # noqa: PLC0415 - the PostgreSQL tests only

    conn: Any = await asyncpg.connect(pg_url)
    store = await PostgresStore.connect(pg_url)
    try:
        await conn.execute(_MANY, "s", "running", 3000)
        end = await conn.prepare(
            "UPDATE sagakit_saga SET status = 'succeeded' WHERE saga_id = $1"
        )
        # this session's counters (not flushed while a transaction is open)
        written = (
            "SELECT c.n_tup_ins AS changes, t.n_tup_ins + t.n_tup_upd AS totals"
            "  FROM pg_stat_xact_user_tables c, pg_stat_xact_user_tables t"
            " WHERE c.relname = 'sagakit_saga_count_change'"
            "   AND t.relname = 'sagakit_saga_count'"
        )
        async with conn.transaction():
            before = await conn.fetchrow(written)
            await end.executemany([(f"s{i}",) for i in range(1, 3001)])
            after = await conn.fetchrow(written)
        assert after["changes"] - before["changes"] == 6000  # -running +succeeded
        assert after["totals"] - before["totals"] <= 4  # order|refund x 2 statuses
        for name in (None, "order", "refund"):
            assert await store.count_by_status(name) == await scanned(store, name)
    finally:
        await store.close()
        await conn.close()


async def test_folds_keep_the_counts_and_bound_the_changes(pg_url: str) -> None:
    """Every 1,024th change folds the committed ones into the totals; a
    fold by hand folds the rest; a transaction that is not READ COMMITTED,
    or that finds another folding, folds nothing."""
    import asyncpg  # noqa: PLC0415 - the PostgreSQL tests only

    conn: Any = await asyncpg.connect(pg_url)
    other: Any = await asyncpg.connect(pg_url)
    store = await PostgresStore.connect(pg_url)
    fold = "SELECT sagakit_saga_count_fold()"
    changes = "SELECT count(*) FROM sagakit_saga_count_change"
    try:
        for batch in range(25):  # 25 transactions of 100 ended sagas
            await conn.execute(_MANY, f"b{batch}-", "succeeded", 100)
        assert await conn.fetchval(changes) < 1024  # folded at 1,024 and 2,048
        assert await store.count_by_status() == {SagaStatus.SUCCEEDED: 2500}
        async with other.transaction(isolation="repeatable_read"):
            assert await other.fetchval(fold) == 0
        left = await conn.fetchval(changes)
        async with other.transaction():
            assert await other.fetchval(fold) == left
            assert await conn.fetchval(fold) == 0  # another is folding
        assert await conn.fetchval(changes) == 0
        rows = await conn.fetch("SELECT saga_name, status, n FROM sagakit_saga_count")
        assert sorted(tuple(r) for r in rows) == [
            ("order", "succeeded", 1675),
            ("refund", "succeeded", 825),
        ]
        for name in (None, "order", "refund"):
            assert await store.count_by_status(name) == await scanned(store, name)
    finally:
        await store.close()
        await other.close()
        await conn.close()


async def test_counts_follow_raw_inserts_updates_and_deletes(pg_url: str) -> None:
    """Whatever writes the table, the triggers keep the ended counts."""
    import asyncpg  # noqa: PLC0415 - the PostgreSQL tests only

    conn: Any = await asyncpg.connect(pg_url)
    store = await PostgresStore.connect(pg_url)
    try:
        await conn.execute(
            "INSERT INTO sagakit_saga (saga_id, saga_name, status, version,"
            " context, state, created_at, updated_at)"
            " SELECT 's' || i, CASE WHEN i % 3 = 0 THEN 'refund' ELSE 'order' END,"
            " CASE WHEN i % 2 = 0 THEN 'succeeded' ELSE 'running' END,"
            " 1, '{}', '{}', i, i FROM generate_series(1, 3000) AS i"
        )
        await conn.execute(
            "UPDATE sagakit_saga SET status = 'failed' WHERE created_at <= 1000"
        )
        await conn.execute(  # reopened (retried), renamed, deleted
            "UPDATE sagakit_saga SET status = 'running' WHERE created_at <= 100"
        )
        await conn.execute(
            "UPDATE sagakit_saga SET saga_name = 'order'"
            " WHERE saga_name = 'refund' AND created_at > 2500"
        )
        await conn.execute("DELETE FROM sagakit_saga WHERE created_at > 2900")
        for name in (None, "order", "refund"):
            rows = await store.database.fetch("scan", "count_by_status_scan", name)
            expected = {SagaStatus(r[0]): int(r[1]) for r in rows}
            assert await store.count_by_status(name) == expected
    finally:
        await store.close()
        await conn.close()


@pytest.fixture
def icu_database(pg_template: str) -> Iterator[str]:
    """An empty database whose collation is ICU's en-US (words first, case
    and punctuation later), not byte order; dropped afterwards."""
    name = f"sagakit_icu_{uuid.uuid4().hex[:12]}"
    run_sync(
        admin(
            f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu"
            " ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        )
    )
    yield database_url(name)
    run_sync(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def test_prefixes_are_byte_ranges_in_an_icu_database(icu_database: str) -> None:
    store = await PostgresStore.connect(icu_database)
    try:
        ids = ["abc", "abc-x", "abc/1", "ABC", "abcd", "ab c", "abd", "abc\u00e9"]
        for saga_id in ids:
            await store.create(make_record(saga_id), [])
        with_abc = sorted(i for i in ids if i.startswith("abc"))
        assert await store.ids_with_prefix("abc") == with_abc
        assert await store.ids_with_prefix("abc/") == ["abc/1"]
        assert await store.ids_with_prefix("ab ") == ["ab c"]
        listed = await store.list_sagas()  # created together: ids in byte order
        assert [r.saga_id for r in listed] == sorted(ids, reverse=True)
    finally:
        await store.close()


@pytest.fixture
def before_0015(pg_template: str) -> Iterator[str]:
    """A database migrated up to 0014 (0015 still to come); dropped after."""
    from sagakit.adapters.store.sql import migrations, queries  # noqa: PLC0415

    name = f"sagakit_0014_{uuid.uuid4().hex[:12]}"
    run_sync(admin(f"CREATE DATABASE {name}"))
    url = database_url(name)

    async def migrate() -> None:
        import asyncpg  # noqa: PLC0415 - the PostgreSQL tests only

        conn = await asyncpg.connect(url)
        q = queries("postgres")
        try:
            await conn.execute(q["create_migrations_table"])
            for m in migrations("postgres"):
                if m.version < 15:
                    await conn.execute(m.sql)
                    await conn.execute(q["record_migration"], m.version, m.name)
        finally:
            await conn.close()

    run_sync(migrate())
    yield url
    run_sync(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def test_migration_0015_carries_the_counts_over(before_0015: str) -> None:
    """0012 kept a count in as many rows as writers at once; 0015 sums them
    into one total per name and status, and counting goes on from there."""
    import asyncpg  # noqa: PLC0415 - the PostgreSQL tests only

    first: Any = await asyncpg.connect(before_0015)
    second: Any = await asyncpg.connect(before_0015)
    end = "UPDATE sagakit_saga SET status = $2 WHERE saga_id = $1"
    try:
        await first.execute(_MANY, "s", "running", 300)
        one, two = first.transaction(), second.transaction()
        await one.start()
        await two.start()
        for i in range(1, 101):  # two writers at once: two rows of one count
            await first.execute(end, f"s{i}", "succeeded")
            await second.execute(end, f"s{100 + i}", "succeeded")
        await second.execute(end, "s201", "failed")
        await two.commit()
        await one.commit()
        shards = await first.fetchval(
            "SELECT count(*) FROM sagakit_saga_count"
            " WHERE saga_name = 'order' AND status = 'succeeded'"
        )
        assert shards == 2
    finally:
        await first.close()
        await second.close()
    store = await PostgresStore.connect(before_0015)  # migrates 0015
    try:
        assert 15 in await store.applied_migrations()
        for name in (None, "order", "refund"):
            assert await store.count_by_status(name) == await scanned(store, name)
        async with store.database.transaction("end one") as conn:  # and on
            await conn.execute(end, "s202", "compensated")
        for name in (None, "order", "refund"):
            assert await store.count_by_status(name) == await scanned(store, name)
    finally:
        await store.close()
