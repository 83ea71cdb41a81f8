"""SQLite specifics: WAL mode, migrations equal schema.sql, append-only history."""

from __future__ import annotations

import asyncio
import math
import re
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sagakit import (
    ConcurrencyError,
    SagaAlreadyExists,
    SagaStatus,
    StoreError,
    open_store,
)
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.store.sql import Migration, in_order, migrations, queries, schema
from sagakit.adapters.store.sqlite import SQLiteStore, split_statements
from sagakit.ports.store import Created
from sagakit.testing.contracts.store import entry, make_record


def _schema_of(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
    rows = conn.execute(
        "SELECT type, name, sql FROM sqlite_master "
        "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
    )
    # ALTER TABLE ADD COLUMN splices ", col TYPE" into the stored CREATE TABLE,
    # so whitespace around punctuation is not compared.
    return {
        (t, n): re.sub(r"\s*([(),;])\s*", r"\1", " ".join(sql.split()))
        for t, n, sql in rows
    }


def test_migrations_produce_exactly_schema_sql(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "migrated.db")
    migrated = sqlite3.connect(tmp_path / "migrated.db")
    reference = sqlite3.connect(":memory:")
    for statement in split_statements(schema("sqlite")):
        reference.execute(statement)
    assert _schema_of(migrated) == _schema_of(reference)
    applied = [
        v for (v,) in migrated.execute("SELECT version FROM sagakit_schema_migrations")
    ]
    assert applied == [m.version for m in migrations("sqlite")]


def test_migration_numbers_may_leave_a_gap() -> None:
    def numbered(*versions: int) -> list[Migration]:
        return [Migration(v, f"m{v}", "") for v in versions]

    ordered = in_order("sqlite", numbered(12, 1, 2))  # 3..11: merged later
    assert [m.version for m in ordered] == [1, 2, 12]
    for wrong in (numbered(2, 3), numbered(1, 2, 2)):
        with pytest.raises(ValueError, match="not numbered 1, 2"):
            in_order("sqlite", wrong)


def test_opening_twice_applies_nothing_new(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "x.db")
    assert first.applied_migrations() == [m.version for m in migrations("sqlite")]
    second = SQLiteStore(tmp_path / "x.db")
    assert second.migrate() == []


def test_library_sets_wal_mode(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "wal.db")
    conn = sqlite3.connect(tmp_path / "wal.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_page_cache_memory_map_and_checkpoint_sizes(tmp_path: Path) -> None:
    def sizes(store: SQLiteStore) -> tuple[int, int, int]:
        conn = store.database.conn
        (cache,) = conn.execute("PRAGMA cache_size").fetchone()
        (mapped,) = conn.execute("PRAGMA mmap_size").fetchone()
        (checkpoint,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        return cache, mapped, checkpoint

    cache, mapped, checkpoint = sizes(SQLiteStore(tmp_path / "a.db"))
    assert cache == -64 * 1024  # KiB
    assert mapped > 0  # SQLite's build may cap it below 2 GB
    assert checkpoint == 8000  # pages (SQLite's own default is 1000)
    smaller = SQLiteStore(tmp_path / "b.db", cache_mb=8, mmap_mb=0, checkpoint_pages=0)
    assert sizes(smaller) == (-8 * 1024, 0, 0)
    wrong = ({"cache_mb": -1}, {"mmap_mb": 1.5}, {"cache_mb": True})
    for bad in (*wrong, {"checkpoint_pages": -5}, {"checkpoint_pages": "1000"}):
        with pytest.raises(StoreError, match="must be an int >= 0"):
            SQLiteStore(tmp_path / "c.db", **bad)  # type: ignore[arg-type]


def test_every_named_query_is_valid_sql(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    for name, sql in queries("sqlite").items():
        try:
            store.database.conn.execute(f"EXPLAIN {sql}")
        except sqlite3.ProgrammingError:
            pass  # wrong number of bindings: the statement itself parsed
        except sqlite3.OperationalError as exc:  # pragma: no cover - reported
            pytest.fail(f"query {name!r} does not parse: {exc}")


@pytest.mark.parametrize(
    ("query", "args", "index"),
    [
        ("due_deadlines", ('["order"]', 100, 1.0), "sagakit_saga_deadline"),
        ("claim_outbox", ("relay", 60.0, 100, 1.0), "sagakit_outbox_available"),
    ],
)
def test_messaging_queries_use_their_index(
    tmp_path: Path, query: str, args: tuple[object, ...], index: str
) -> None:
    store = SQLiteStore(tmp_path / "plan.db")
    plan = store.database.conn.execute(
        f"EXPLAIN QUERY PLAN {queries('sqlite')[query]}", args
    ).fetchall()
    assert any(index in str(row[-1]) for row in plan), plan


WAKE = "sagakit_workflow_wake (app=? AND definition_version=? AND <expr>"


@pytest.mark.parametrize(
    ("query", "args", "search"),
    [
        ("workflow_claim", ("a", "w", 1.0, 30.0, '["s"]', 100, 1, "fp"), WAKE),
        ("workflow_next_due", ("a", '["s"]', 1, "fp"), WAKE),
        (
            "workflow_list_of_app_in_status",
            ("running", "a", 500, math.inf),
            "sagakit_workflow_status (app=? AND status=? AND created_at<?)",
        ),
    ],
)
def test_workflow_timer_queries_search_one_range_of_an_index(
    tmp_path: Path, query: str, args: tuple[object, ...], search: str
) -> None:
    """The claim, the next due time and the idle worker's listing read one
    range of an index in order: no scan of the app's instances, no sort."""
    store = SQLiteStore(tmp_path / "plan.db")
    plan = [
        str(row[-1])
        for row in store.database.conn.execute(
            f"EXPLAIN QUERY PLAN {queries('sqlite')[query]}", args
        )
    ]
    assert any(f"USING INDEX {search}" in line for line in plan), plan
    assert not any("TEMP B-TREE" in line for line in plan), plan


async def test_history_is_append_only(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "h.db")
    await store.create(make_record("s1"), [entry("s1", "started")])
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.database.conn.execute(
            "UPDATE sagakit_step_history SET outcome = 'forged'"
        )


async def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    store = SQLiteStore(path)
    await store.create(make_record("s1", key="k"), [entry("s1", "started")])
    await store.close()
    reopened = SQLiteStore(path)
    assert (await reopened.get("s1")).idempotency_key == "k"
    assert len(await reopened.history("s1")) == 1


async def test_a_save_keeping_status_updates_in_place(
    tmp_path: Path,
) -> None:
    """A save that keeps the status does not set it (the indexes on it stay
    untouched), even when the deadline moves (a remote step's next one);
    one that changes the status, or finds the saga marked waiting
    meanwhile, runs the full update, which clears the mark."""
    store = SQLiteStore(tmp_path / "p.db")
    conn = store.database.conn
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    first = make_record("s1")
    await store.create(first, [entry("s1", "started")])

    async def save(version: int, **changes: Any) -> list[str]:
        ran.clear()
        record = replace(first, version=version, **changes)
        await store.save(record, version - 1, [entry("s1", f"v{version}")])
        updates = [s for s in ran if s.startswith("UPDATE sagakit_saga")]
        # the first column each sets: the full update's is status; the trace
        # may show a statement more than once (SQLite re-runs it)
        return list(dict.fromkeys(s.split()[3] for s in updates))

    assert await save(2, updated_at=200.0) == ["version"]
    conn.execute("UPDATE sagakit_saga SET waiting = 'a worker without it'")
    assert await save(3) == ["version", "status"]  # in place finds no row
    assert await save(4, deadline=150.0) == ["version"]  # in place, deadline set
    assert await store.due_deadlines(["order"]) == ["s1"]  # its index has it
    assert await save(5, deadline=None) == ["version"]
    assert await save(6, status=SagaStatus.SUCCEEDED) == ["status"]
    row = conn.execute(
        "SELECT version, status, deadline, waiting, updated_at FROM sagakit_saga"
    ).fetchone()
    assert row == (6, "succeeded", None, None, 100.0)  # the last save's
    assert len(await store.history("s1")) == 6


async def test_a_record_with_another_creation_time_is_refused(
    tmp_path: Path,
) -> None:
    """History lines are filed under the record's created_at without reading
    the saga's row again; the update checks it against the stored one, so a
    record claiming another creation time is refused, saying so, and leaves
    no line the saga's history would not find."""
    store = SQLiteStore(tmp_path / "c.db")
    first = make_record("s1")
    await store.create(first, [entry("s1", "started")])
    await store.save(replace(first, version=2), 1, [entry("s1", "v2")])
    moved = replace(first, version=3, created_at=first.created_at + 1)
    # the in-place update (same status), then the full one (another status)
    for record in (moved, replace(moved, status=SagaStatus.COMPENSATING)):
        with pytest.raises(ConcurrencyError, match="created_at never changes"):
            await store.save(record, 2, [entry("s1", "misfiled")])
    with pytest.raises(ConcurrencyError, match="version 1 is stale"):
        await store.save(replace(first, version=3), 1, [])
    keys = store.database.conn.execute(
        "SELECT DISTINCT saga_created_at FROM sagakit_step_history"
    ).fetchall()
    assert keys == [(first.created_at,)]
    assert [h.outcome for h in await store.history("s1")] == ["started", "v2"]


async def test_a_history_line_of_another_saga_is_refused(tmp_path: Path) -> None:
    """A save appends only its own saga's lines: one of another saga, even
    one that exists, fails the save (as on PostgreSQL) and writes nothing."""
    store = SQLiteStore(tmp_path / "o.db")
    for saga_id in ("s1", "s2"):
        await store.create(make_record(saga_id), [entry(saga_id, "started")])
    with pytest.raises(StoreError):
        await store.save(
            replace(make_record("s1"), version=2), 1, [entry("s2", "misfiled")]
        )
    assert (await store.get("s1")).version == 1
    assert [h.outcome for h in await store.history("s2")] == ["started"]


def test_bad_synchronous_mode_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="synchronous must be one of"):
        SQLiteStore(tmp_path / "s.db", synchronous="sometimes")


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        SQLiteStore(tmp_path / "missing-dir" / "x.db")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///rel.db", "rel.db"),
        ("plain.db", "plain.db"),
        ("sqlite://:memory:", ":memory:"),
    ],
)
def test_open_store_parses_sqlite_urls(
    url: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(url)
    assert isinstance(store, SQLiteStore)
    assert store.path == expected


def test_open_store_absolute_sqlite_url(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/abs.db")
    assert isinstance(store, SQLiteStore)
    assert store.path == f"{tmp_path}/abs.db"


def test_open_store_env_var_and_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGAKIT_DATABASE_URL", f"{tmp_path}/env.db")
    store = open_store()
    assert isinstance(store, SQLiteStore)
    assert store.path == f"{tmp_path}/env.db"
    assert isinstance(open_store("memory://"), InMemoryStore)


@pytest.mark.parametrize("url", ["mysql://x/y", "postgresql://u@h/db", "sqlite://"])
def test_open_store_rejects_unsupported_urls(url: str) -> None:
    with pytest.raises(StoreError):
        open_store(url)


async def test_open_database_gives_every_store_on_one_connection(
    tmp_path: Path,
) -> None:
    from sagakit.adapters.store import open_database  # noqa: PLC0415
    from sagakit.testing.contracts.workflow_store import (  # noqa: PLC0415
        APP,
        make,
    )

    async with await open_database(f"sqlite:///{tmp_path / 'all.db'}") as db:
        assert isinstance(db.sagas, SQLiteStore)
        await db.sagas.create(make_record("s1"), [entry("s1", "started")])
        assert await db.events.record_inbox("svc", "m1", None)
        assert db.workflows is not None
        await db.workflows.create(make("w1"), [])
        # one connection: each store sees what the others wrote
        assert await db.sagas.inbox_reply("svc", "m1") == b""
        assert (await db.workflows.get(APP, "w1")).instance_id == "w1"
        assert db.sagas.commits == db.events.database.commits  # type: ignore[attr-defined]
        await db.sagas.close()  # not its database: still open
        assert (await db.sagas.get("s1")).saga_id == "s1"
    with pytest.raises(sqlite3.ProgrammingError):
        db.sagas.database.conn.execute("SELECT 1")  # type: ignore[attr-defined]


async def test_open_database_of_memory_keeps_no_workflows() -> None:
    from sagakit.adapters.store import open_database_sync  # noqa: PLC0415

    db = open_database_sync("memory://")
    assert isinstance(db.sagas, InMemoryStore)
    assert await db.events.record_inbox("svc", "m1", None)
    assert await db.sagas.inbox_reply("svc", "m1") == b""
    assert db.workflows is None
    await db.close()


def test_processes_creating_one_saga_id_give_one_instance(tmp_path: Path) -> None:
    """Four connections on their own threads, as four processes sharing the
    file, create one id at once: one instance, ``SagaAlreadyExists`` with its
    status for the others (the IntegrityError never leaks)."""
    path = tmp_path / "race.db"
    asyncio.run(SQLiteStore(path).close())  # migrated once, up front
    ready = threading.Barrier(4)
    outcomes: list[Created | SagaAlreadyExists] = []

    async def attempt(store: SQLiteStore, n: int) -> Created | SagaAlreadyExists:
        try:
            return await store.create(make_record("s1", context={"n": n}), [])
        except SagaAlreadyExists as exc:
            return exc
        finally:
            await store.close()

    def create(n: int) -> None:
        store = SQLiteStore(path)
        ready.wait()
        outcomes.append(asyncio.run(attempt(store, n)))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    created = [o for o in outcomes if isinstance(o, Created)]
    refused = [o for o in outcomes if isinstance(o, SagaAlreadyExists)]
    assert len(created) == 1, outcomes
    assert [(e.saga_id, e.status) for e in refused] == [("s1", "running")] * 3


def test_migration_0015_counts_the_unfinished_sagas_too(tmp_path: Path) -> None:
    """0012 counted the ended sagas (the unfinished were read from an
    index); 0015 adds the unfinished ones, and every status is counted from
    there on."""
    path = tmp_path / "before.db"
    conn = sqlite3.connect(path, isolation_level=None)
    q = queries("sqlite")
    conn.execute(q["create_migrations_table"])
    for m in migrations("sqlite"):
        if m.version < 15:
            for statement in split_statements(m.sql):
                conn.execute(statement)
            conn.execute(q["record_migration"], (m.version, m.name, 0.0))
    conn.execute(
        "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < 30)"
        " INSERT INTO sagakit_saga (saga_id, saga_name, status, version, context,"
        " state, created_at, updated_at)"
        " SELECT 's' || n, CASE WHEN n % 3 = 0 THEN 'refund' ELSE 'order' END,"
        " CASE WHEN n % 2 = 0 THEN 'succeeded' WHEN n % 5 = 0 THEN 'compensating'"
        " ELSE 'running' END, 1, '{}', '{}', n, n FROM i"
    )
    conn.close()

    store = SQLiteStore(path)  # migrates 0015
    scan = store.database.conn.execute(
        "SELECT saga_name, status, count(*) FROM sagakit_saga GROUP BY 1, 2"
    ).fetchall()
    kept = store.database.conn.execute(
        "SELECT saga_name, status, n FROM sagakit_saga_count WHERE n > 0"
    ).fetchall()
    assert sorted(kept) == sorted(scan)
    store.database.conn.execute(
        "UPDATE sagakit_saga SET status = 'failed' WHERE saga_id IN ('s1', 's5')"
    )
    store.database.conn.execute("DELETE FROM sagakit_saga WHERE saga_id = 's2'")
    expected = {
        (SagaStatus(s), n)
        for s, n in store.database.conn.execute(
            "SELECT status, count(*) FROM sagakit_saga GROUP BY 1"
        )
    }

    async def counted() -> dict[SagaStatus, int]:
        return await store.count_by_status()

    assert set(asyncio.run(counted()).items()) == expected
