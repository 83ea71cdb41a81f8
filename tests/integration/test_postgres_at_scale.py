"""PostgreSQL specifics of migration 0012. The number of ended sagas per
name and status is kept by triggers in rows that no two writers change at
once: the counts stay exact whoever writes, concurrently or not, and no
writer waits for another. Saga ids compare byte by byte whatever the
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


async def scanned(store: PostgresStore) -> dict[SagaStatus, int]:
    """The counts read from every saga (the query of schemas before 0012)."""
    rows = await store.database.fetch("scan", "count_by_status_scan", None)
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
    """Two transactions end sagas of one name at once: the second takes
    another row of the count instead of waiting for the first's (a lock
    wait would run into lock_timeout); both counts add up."""
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
        await first.execute(end, "a")  # holds a row of (order, succeeded)
        await second.execute("SET LOCAL lock_timeout = '200ms'")
        await second.execute(end, "b")
        await second.execute(end, "c")  # and (order, failed) goes down
        await two.commit()
        await one.commit()
        rows = await first.fetchval(
            "SELECT count(*) FROM sagakit_saga_count WHERE status = 'succeeded'"
        )
        assert rows == 2  # one per writer at once
        expected = {SagaStatus.SUCCEEDED: 3}
        assert await scanned(store) == expected
        assert await store.count_by_status() == expected
        assert await store.count_by_status("order") == expected
    finally:
        await first.close()
        await second.close()
        await store.close()


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
