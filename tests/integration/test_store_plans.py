"""The plans of the saga store's reads and claims: each uses its index, so
that it stays fast with a million stored sagas (``benchmarks/scale_sagas.py``
measures them).

SQLite keeps no statistics (sagakit never runs ``ANALYZE``), so its plans do
not depend on the data: an empty file shows them. PostgreSQL plans by its
statistics, so its database holds 20,000 sagas shaped like a busy store's
(most succeeded, 1% running, none compensating, one in ten of another saga)
and is analyzed; both the plan for the arguments and the generic plan that a
prepared statement gets after five calls are checked where both are used.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sagakit import SagaStatus
from sagakit.adapters.store.reads import listing, prefix_end
from sagakit.adapters.store.sql import queries
from sagakit.adapters.store.sqlite import SQLiteStore
from tests.conftest import cloned_database, run_sync

NOW = 2_000_000_000.0
SAGAS = 20_000

# (label, named query, arguments, index it must read)
_LISTINGS: list[tuple[str, str, tuple[Any, ...], str]] = [
    ("newest", *listing(None, None, 50, None, False), "sagakit_saga_created"),
    ("before", *listing(None, None, 50, 1.5e9, False), "sagakit_saga_created"),
    (
        "empty status",
        *listing("compensating", None, 50, None, False),
        "sagakit_saga_status",
    ),
    (
        "unknown saga",
        *listing(None, "nothing", 50, None, False),
        "sagakit_saga_name",
    ),
    (
        "saga and empty status",
        *listing("compensating", "refund", 50, None, False),
        "sagakit_saga_name_status",
    ),
    ("waiting", *listing(None, "order", 50, None, True), "sagakit_saga_waiting"),
]

# The dashboard's next pages (keyset: after the last saga shown)
_PAGES: list[tuple[str, str, tuple[Any, ...], str]] = [
    (
        "next page",
        *listing(None, None, 50, 1.5e9, False, before_id="some-id"),
        "sagakit_saga_created",
    ),
    (
        "next page of a saga",
        *listing(None, "refund", 50, 1.5e9, False, before_id="some-id"),
        "sagakit_saga_name",
    ),
    (
        "next page of a status",
        *listing("failed", None, 50, 1.5e9, False, before_id="some-id"),
        "sagakit_saga_status",
    ),
]


def _sqlite_plan(store: SQLiteStore, query: str, args: tuple[Any, ...]) -> str:
    rows = store.database.conn.execute(
        f"EXPLAIN QUERY PLAN {queries('sqlite')[query]}", args
    ).fetchall()
    return "\n".join(row[3] for row in rows)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "plans.db")


@pytest.mark.parametrize(
    ("label", "query", "args", "index"),
    _LISTINGS + _PAGES,
    ids=[c[0] for c in _LISTINGS + _PAGES],
)
def test_sqlite_lists_read_their_index_in_order(
    sqlite_store: SQLiteStore,
    label: str,
    query: str,
    args: tuple[Any, ...],
    index: str,
) -> None:
    plan = _sqlite_plan(sqlite_store, query, args)
    assert f"USING INDEX {index} " in plan, plan
    assert "SCAN sagakit_saga" not in plan, plan
    assert "TEMP B-TREE FOR ORDER BY" not in plan, plan  # at most the tie-break


def test_sqlite_reads_of_ids_counts_and_unfinished(sqlite_store: SQLiteStore) -> None:
    names = json.dumps(["order"])
    plan = _sqlite_plan(sqlite_store, "ids_with_prefix", ("abc", prefix_end("abc"), 4))
    assert "(saga_id>? AND saga_id<?)" in plan, plan
    for query, args in [("count_by_status", ()), ("count_saga_by_status", ("order",))]:
        counts = _sqlite_plan(sqlite_store, query, args)
        assert " sagakit_saga_count" in counts, counts
        # the kept counts alone: no saga, however many are running
        assert "sagakit_saga " not in counts.replace("sagakit_saga_count", ""), counts
    for query, args in [
        ("unfinished_sagas", (names, "some-id", 500)),
        ("claim_candidates", ("w1", names, 30.0, 500, "[]", "some-id", NOW)),
    ]:
        plan = _sqlite_plan(sqlite_store, query, args)
        assert "USING INDEX sagakit_saga_unfinished (created_at>?)" in plan, plan
        assert "TEMP B-TREE FOR ORDER BY" not in plan, plan


def test_sqlite_search_notifications_and_unattended(sqlite_store: SQLiteStore) -> None:
    by_key = _sqlite_plan(sqlite_store, "find_sagas_by_key", ("booking-81", 20))
    assert "USING INDEX sagakit_saga_key (idempotency_key=?)" in by_key, by_key
    search = _sqlite_plan(sqlite_store, "search_sagas_context", ("oslo", 50, 10_000))
    assert "USING INDEX sagakit_saga_created" in search, search
    unattended = _sqlite_plan(
        sqlite_store, "unattended_sagas", (NOW, json.dumps(["order"]), 200, NOW, "x")
    )
    assert "USING INDEX sagakit_saga_unfinished (created_at>?)" in unattended
    claim = _sqlite_plan(
        sqlite_store, "notification_claim", ("w1", NOW, 30.0, 50, None)
    )
    assert "USING INDEX sagakit_notification_due (next_at<?)" in claim, claim


# -- PostgreSQL ------------------------------------------------------------------

_FILL = """
INSERT INTO sagakit_saga (
    saga_id, saga_name, status, version, context, state, created_at, updated_at,
    waiting)
SELECT md5(i::text),
       CASE WHEN i % 10 = 0 THEN 'refund' ELSE 'order' END,
       CASE WHEN i % 100 = 0 THEN 'running'
            WHEN i % 100 < 90 THEN 'succeeded'
            WHEN i % 100 < 96 THEN 'compensated'
            ELSE 'failed' END,
       1, '{}'::jsonb, '{}'::jsonb, 1e9 + i, 1e9 + i,
       CASE WHEN i % 1000 = 0 THEN 'needs order v2' END
  FROM generate_series(1, $1::integer) AS i
"""

_FILL_HISTORY = """
INSERT INTO sagakit_step_history (
    saga_created_at, saga_id, step, kind, attempt, outcome, started_at,
    finished_at)
SELECT s.created_at, s.saga_id, 'step' || k, 'action', 1, 'succeeded',
       s.created_at, s.created_at
  FROM sagakit_saga AS s, generate_series(1, 3) AS k
"""


@pytest.fixture(scope="module")
def filled_pg_url(pg_template: str) -> Iterator[str]:
    """A migrated database of 20,000 analyzed sagas, filled once for the
    module: the tests only plan reads, so they can share it."""
    import asyncpg  # noqa: PLC0415 - the PostgreSQL tests only

    async def fill(url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(_FILL, SAGAS)
            await conn.execute(_FILL_HISTORY)
            await conn.execute("ANALYZE sagakit_saga, sagakit_step_history")
        finally:
            await conn.close()

    with cloned_database(pg_template) as url:
        run_sync(fill(url))
        yield url


@pytest.fixture
async def pg(filled_pg_url: str) -> AsyncIterator[Any]:
    """A connection of this test's own to the filled database."""
    import asyncpg  # noqa: PLC0415 - the PostgreSQL tests only

    conn = await asyncpg.connect(filled_pg_url)
    yield conn
    await conn.close()


def _literal(value: Any) -> str:
    """A test's own argument as SQL (EXECUTE takes no bound parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return f"ARRAY[{', '.join(map(_literal, value))}]::text[]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


async def _pg_plan(conn: Any, query: str, args: tuple[Any, ...], mode: str) -> str:
    """The plan of a named query for ``args``, as PostgreSQL makes it under
    ``plan_cache_mode = mode`` for a prepared statement."""
    sql = queries("postgres")[query]
    async with conn.transaction():
        await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        await conn.execute(f"PREPARE planned AS {sql}")
        try:
            given = ", ".join(_literal(arg) for arg in args)
            call = f"planned({given})" if args else "planned"
            rows = await conn.fetch(f"EXPLAIN EXECUTE {call}")
        finally:
            await conn.execute("DEALLOCATE planned")
    return "\n".join(row[0] for row in rows)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("label", "query", "args", "index"), _LISTINGS, ids=[c[0] for c in _LISTINGS]
)
async def test_postgres_lists_read_their_index(
    pg: Any, label: str, query: str, args: tuple[Any, ...], index: str
) -> None:
    """Planned for their arguments, as ``fetch_replanned`` runs them: a
    cached generic plan would read a whole index for an empty status."""
    plan = await _pg_plan(pg, query, args, "force_custom_plan")
    assert f"using {index} on sagakit_saga" in plan, plan
    assert "Seq Scan" not in plan, plan


@pytest.mark.postgres
async def test_postgres_generic_plan_of_a_list_would_scan(pg: Any) -> None:
    """Why lists are replanned: the generic plan of the status list reads
    the creation index backwards for any status, every saga for one that
    none has."""
    query, args = listing("compensating", None, 50, None, False)
    plan = await _pg_plan(pg, query, args, "force_generic_plan")
    assert "sagakit_saga_status" not in plan, plan


@pytest.mark.postgres
async def test_postgres_lists_never_run_a_generic_plan(pg_url: str) -> None:
    """``list_sagas`` prepares its statement for each call: the generic plan
    PostgreSQL would make after five calls of a cached one never runs."""
    import asyncpg  # noqa: PLC0415 - the PostgreSQL tests only

    from sagakit.adapters.store.postgres import (  # noqa: PLC0415
        PostgresDatabase,
        PostgresStore,
    )

    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=1)
    store = PostgresStore(PostgresDatabase(pool, where="one connection"))
    try:
        for _ in range(8):
            await store.list_sagas(status=SagaStatus.COMPENSATING)
            await store.list_sagas(saga_name="nothing")
        async with pool.acquire() as conn:  # the connection they ran on
            plans = await conn.fetch(
                "SELECT statement, generic_plans FROM pg_prepared_statements"
            )
        lists = [p for p in plans if "pg_prepared_statements" not in p["statement"]]
        assert all(p["generic_plans"] == 0 for p in lists), lists
    finally:
        await pool.close()


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_postgres_ids_counts_claims_and_deadlines(pg: Any, mode: str) -> None:
    prefix = await pg.fetchval("SELECT left(md5('77'), 8)")
    plan = await _pg_plan(pg, "ids_with_prefix", (prefix, prefix_end(prefix), 4), mode)
    assert "sagakit_saga_pkey" in plan, plan
    # a range of the key, not a filter over every id
    assert "Index Cond: ((saga_id >= " in plan, plan
    assert "(saga_id < " in plan, plan
    for query, args in [("count_by_status", ()), ("count_saga_by_status", ("order",))]:
        counts = await _pg_plan(pg, query, args, mode)
        assert "sagakit_saga_count_change" in counts, counts
        # the kept counts alone: no saga, however many are running (an
        # index of them holds every version written since the last vacuum)
        assert " on sagakit_saga " not in counts, counts
        assert "sagakit_saga_status" not in counts, counts
    after = await pg.fetchval(
        "SELECT saga_id FROM sagakit_saga WHERE status = 'running'"
        " ORDER BY created_at LIMIT 1"
    )
    claim = ("w1", ["order"], 30.0, 500, [], after)
    for query, args in [
        ("claim_sagas", claim),
        ("unfinished_sagas", (None, after, 500)),
    ]:
        plan = await _pg_plan(pg, query, args, mode)
        assert "using sagakit_saga_unfinished" in plan, plan
        assert "Seq Scan on sagakit_saga" not in plan, plan
    plan = await _pg_plan(pg, "due_deadlines", (["order"], 100), mode)
    assert "using sagakit_saga_deadline" in plan, plan


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_postgres_history_of_a_saga_reads_by_its_creation(
    pg: Any, mode: str
) -> None:
    """A saga's history is read through the index keyed by its creation time
    (migration 0020), looked up first, so that lines are appended at the
    index's end rather than at a place as random as the saga id."""
    saga_id = await pg.fetchval("SELECT md5('77')")
    plan = await _pg_plan(pg, "get_history", (saga_id,), mode)
    assert "using sagakit_step_history_saga_time" in plan, plan
    assert "Index Cond: ((saga_created_at = $" in plan, plan
    assert "Seq Scan" not in plan, plan
    lines = await pg.fetch(queries("postgres")["get_history"], saga_id)
    assert [line["step"] for line in lines] == ["step1", "step2", "step3"]


@pytest.mark.postgres
async def test_postgres_pages_search_and_unattended(pg: Any) -> None:
    """One database for all (filling it is what takes time): next pages read
    an index in order, a key its index, a context search the newest sagas
    only, the stuck-saga sweep the unfinished ones only."""
    await pg.execute(
        "UPDATE sagakit_saga SET idempotency_key = 'k' || created_at"
        " WHERE created_at::bigint % 3 = 0"
    )
    await pg.execute("ANALYZE sagakit_saga")
    for label, query, args, _ in _PAGES:
        plan = await _pg_plan(pg, query, args, "force_custom_plan")
        assert "Index Scan Backward using sagakit_saga_" in plan, (label, plan)
        assert "Seq Scan" not in plan, (label, plan)
    for mode in ("force_custom_plan", "force_generic_plan"):
        plan = await _pg_plan(pg, "find_sagas_by_key", ("k1000000300", 20), mode)
        assert "using sagakit_saga_key" in plan, plan
        plan = await _pg_plan(pg, "search_sagas_context", ("oslo", 50, 10_000), mode)
        assert "using sagakit_saga_created" in plan, plan  # the newest only
        assert "Seq Scan on sagakit_saga" not in plan, plan
        unattended = (NOW, ["order"], 200, None)
        plan = await _pg_plan(pg, "unattended_sagas", unattended, mode)
        # the unfinished ones only (of the name, or of every saga)
        assert "sagakit_saga_unfinished" in plan or (
            "Index Scan on sagakit_saga_name_status" in plan
        ), plan
        assert "Seq Scan on sagakit_saga" not in plan, plan
