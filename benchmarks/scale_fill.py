"""Fills a saga store with ``--n`` sagas for ``scale_sagas.py``: the
benchmark-only fast path.

Rows go straight into the tables with one ``INSERT ... SELECT`` per table
(``generate_series`` on PostgreSQL, in chunks, a recursive CTE on SQLite),
their state and history copied from sagas the library really ran; nothing
else should write sagakit's tables this way. The count triggers run as they
do for any write; on PostgreSQL the changes they append are folded and the
tables vacuumed and analyzed after the load, as autovacuum would.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagakit import Orchestrator, Saga, Step
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.store.rows import dumps

ID_PLACEHOLDER = "__SAGA_ID__"


async def act(ctx: Any) -> None:
    return None


async def undo(ctx: Any) -> None:
    return None


async def fail(ctx: Any) -> None:
    raise RuntimeError("step 3 failed")


def three_steps(name: str, *, failing: bool = False) -> Saga[Any]:
    return Saga(
        name,
        [
            Step("one", act, compensate=undo),
            Step("two", act, compensate=undo),
            Step("three", fail if failing else act, compensate=undo),
        ],
    )


RECOVERED = three_steps("scale_recover")
"""The definition of the unfinished sagas that recover() resumes."""
OTHER = three_steps("scale_other")
"""Older unfinished sagas of a definition the recovering process lacks."""
RUN = three_steps("scale_run")
"""The saga of the throughput rows."""


# -- the rows to store -----------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of stored saga: its status, and state and history to copy."""

    name: str
    status: str
    state: str  # JSON with ID_PLACEHOLDER for the saga id
    fingerprint: str | None
    history: list[dict[str, Any]]  # JSON-ready history rows, times relative


async def _template(saga: Saga[Any], *, submit: bool) -> tuple[Any, Any]:
    store = InMemoryStore()
    orchestrator = Orchestrator(store, [saga])
    if submit:
        saga_id = await orchestrator.submit(saga)
    else:
        saga_id = (await orchestrator.run(saga)).saga_id
    return await store.get(saga_id), await store.history(saga_id)


async def kinds() -> dict[str, Kind]:
    """Each kind of stored saga, from sagas the library really ran."""
    found: dict[str, Kind] = {}
    shapes = {
        "succeeded": (three_steps("scale_order"), False, None),
        "compensated": (three_steps("scale_order", failing=True), False, None),
        "failed": (three_steps("scale_order", failing=True), False, "failed"),
        "compensation_failed": (
            three_steps("scale_order", failing=True),
            False,
            "compensation_failed",
        ),
        "recover": (RECOVERED, True, None),
        "other": (OTHER, True, None),
    }
    for kind, (saga, submit, status) in shapes.items():
        record, history = await _template(saga, submit=submit)
        state = record.state.to_dict()
        if status is not None:
            state["status"] = status
        start = record.created_at
        found[kind] = Kind(
            name=saga.name,
            status=status or record.status.value,
            state=dumps(state).replace(record.saga_id, ID_PLACEHOLDER),
            fingerprint=record.fingerprint,
            history=[
                {
                    "step": h.step,
                    "kind": h.kind,
                    "attempt": h.attempt,
                    "outcome": h.outcome,
                    "result": h.result,
                    "error": None if h.error is None else h.error.to_dict(),
                    "started_at": h.started_at - start,
                    "finished_at": h.finished_at - start,
                }
                for h in history
            ],
        )
    return found


@dataclass(frozen=True)
class Plan:
    """Which saga goes where: ``other`` oldest unfinished sagas of
    ``scale_other``, then every ``stride``-th of the next rows one of the
    ``unfinished`` of ``scale_recover``; the rest end by ``i % 100``."""

    n: int
    unfinished: int
    other: int
    start: float = field(default_factory=lambda: time.time() - 30 * 86400)
    spacing: float = 0.001  # seconds between two sagas' created_at

    @property
    def stride(self) -> int:
        return max(1, (self.n - self.other) // max(1, self.unfinished))


# The kind of row i, the same expression on both dialects ($1/:other etc. are
# bound by each builder); terminal rows are named by i % 10.
KIND_CASE = """CASE
    WHEN i < {other} THEN 'other'
    WHEN (i - {other}) % {stride} = 0
         AND (i - {other}) / {stride} < {unfinished} THEN 'recover'
    WHEN i % 100 < 90 THEN 'succeeded'
    WHEN i % 100 < 96 THEN 'compensated'
    WHEN i % 100 < 99 THEN 'failed'
    ELSE 'compensation_failed' END"""


def kinds_rows(found: dict[str, Kind]) -> str:
    return dumps(
        [
            {
                "kind": key,
                "name": k.name,
                "status": k.status,
                "state": k.state,
                "fingerprint": k.fingerprint,
            }
            for key, k in found.items()
        ]
    )


def history_rows(found: dict[str, Kind]) -> str:
    return dumps(
        [
            {
                **h,
                "result": dumps(h["result"]),
                "error": dumps(h["error"]),
                "kind_of": k,
            }
            for k, kind in found.items()
            for h in kind.history
        ]
    )


SQLITE_SAGAS = """
WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < :n - 1),
rows AS MATERIALIZED (
    SELECT i, lower(hex(randomblob(16))) AS id, {kind} AS kind FROM g),
kinds AS MATERIALIZED (SELECT value ->> 'kind' AS kind, value ->> 'name' AS name,
                 value ->> 'status' AS status, value ->> 'state' AS state,
                 value ->> 'fingerprint' AS fingerprint
            FROM json_each(:kinds))
INSERT INTO sagakit_saga (
    saga_id, saga_name, status, version, idempotency_key, context, state,
    failed_step, created_at, updated_at, owner, lease_until, deadline,
    definition_version, fingerprint, waiting)
SELECT r.id,
       CASE WHEN k.name = 'scale_order' AND (r.i / 100) % 10 = 0 THEN 'scale_refund'
            ELSE k.name END,
       k.status, 3, NULL, '{{}}', replace(k.state, :placeholder, r.id), NULL,
       :start + r.i * :spacing, :start + r.i * :spacing + 0.01, NULL, NULL, NULL,
       1, k.fingerprint, NULL
  FROM rows r JOIN kinds k ON k.kind = r.kind
"""

SQLITE_HISTORY = """
WITH h AS MATERIALIZED (
    SELECT key AS n, value ->> 'kind_of' AS kind_of, value ->> 'step' AS step,
           value ->> 'kind' AS kind, value ->> 'attempt' AS attempt,
           value ->> 'outcome' AS outcome,
           nullif(value ->> 'result', 'null') AS result,
           nullif(value ->> 'error', 'null') AS error,
           value ->> 'started_at' AS started_at,
           value ->> 'finished_at' AS finished_at
      FROM json_each(:history))
INSERT INTO sagakit_step_history (
    saga_created_at, saga_id, seq, step, kind, attempt, outcome, result, error,
    started_at, finished_at)
SELECT s.created_at, s.saga_id, h.n + 1, h.step, h.kind, h.attempt, h.outcome,
       h.result, h.error, s.created_at + h.started_at, s.created_at + h.finished_at
  FROM sagakit_saga s CROSS JOIN h
 WHERE h.kind_of = CASE
        WHEN s.saga_name = 'scale_other' THEN 'other'
        WHEN s.saga_name = 'scale_recover' THEN 'recover'
        ELSE s.status END
 ORDER BY s.created_at, s.saga_id, h.n
"""
"""In the history's key order (migration 0017: saga created_at, saga id,
seq), so that every line goes to the last page."""

POSTGRES_CHUNK = """
WITH rows AS (
    SELECT i, md5(i::text || ':' || $1::text) AS id, {kind} AS kind
      FROM generate_series($2::bigint, $3::bigint - 1) AS i),
kinds AS (SELECT * FROM jsonb_to_recordset($4::jsonb) AS k(
    kind text, name text, status text, state text, fingerprint text)),
h AS (SELECT * FROM ROWS FROM (jsonb_to_recordset($8::jsonb) AS (
        kind_of text, step text, kind text, attempt integer, outcome text,
        result text, error text, started_at double precision,
        finished_at double precision)) WITH ORDINALITY AS h(
        kind_of, step, kind, attempt, outcome, result, error, started_at,
        finished_at, n)),
inserted AS (
    INSERT INTO sagakit_saga (
        saga_id, saga_name, status, version, idempotency_key, context, state,
        failed_step, created_at, updated_at, owner, lease_until, deadline,
        definition_version, fingerprint, waiting)
    SELECT r.id,
           CASE WHEN k.name = 'scale_order' AND (r.i / 100) % 10 = 0
                THEN 'scale_refund' ELSE k.name END,
           k.status, 3, NULL, '{{}}'::jsonb, replace(k.state, $5, r.id)::jsonb,
           NULL, $6::double precision + r.i * $7::double precision,
           $6::double precision + r.i * $7::double precision + 0.01, NULL,
           NULL, NULL, 1, k.fingerprint, NULL
      FROM rows r JOIN kinds k ON k.kind = r.kind
     ORDER BY r.i
    RETURNING saga_id, created_at,
              CASE WHEN saga_name IN ('scale_other', 'scale_recover')
                   THEN substr(saga_name, 7) ELSE status END AS kind_of)
INSERT INTO sagakit_step_history (
    saga_created_at, saga_id, step, kind, attempt, outcome, result, error,
    started_at, finished_at)
SELECT s.created_at, s.saga_id, h.step, h.kind, h.attempt, h.outcome,
       nullif(h.result, 'null')::jsonb, nullif(h.error, 'null')::jsonb,
       s.created_at + h.started_at, s.created_at + h.finished_at
  FROM inserted s JOIN h ON h.kind_of = s.kind_of
 ORDER BY s.created_at, h.n
"""
POSTGRES_CHUNK_SIZE = 50_000
"""Sagas per statement (and transaction): one chunk is all a restart of the
server (other test suites restart it) costs."""


def _kind_case(plan: Plan) -> str:
    return KIND_CASE.format(
        other=plan.other, stride=plan.stride, unfinished=plan.unfinished
    )


POSTGRES_FOLD = """
DO $$
BEGIN
    IF to_regproc('sagakit_saga_count_fold') IS NOT NULL THEN
        PERFORM sagakit_saga_count_fold();
    END IF;
END
$$"""
"""Fold the count changes the load appended (on a schema that has them)."""

POSTGRES_VACUUMED = (
    "sagakit_saga",
    "sagakit_step_history",
    "sagakit_saga_count_change",
)
"""What autovacuum would vacuum and analyze soon after a load like this:
the sagas, their history, and the count changes the load appended and the
fold deleted (a count reads every page of that table until then)."""

HISTORY_INDEX = "sagakit_step_history_saga_time"
"""PostgreSQL's: dropped while the history is written, then made again from
its own DDL: sorting once is about twice as fast as millions of random
inserts. (SQLite's history has no such index: its lines are written in key
order.)"""


def build_sqlite(path: Path, plan: Plan, found: dict[str, Kind]) -> None:
    """The benchmark-only fast path: every row in one transaction."""
    import sqlite3  # noqa: PLC0415 - this store only

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA cache_size = -1000000")  # this connection only
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            SQLITE_SAGAS.format(kind=_kind_case(plan)),
            {
                "n": plan.n,
                "kinds": kinds_rows(found),
                "placeholder": ID_PLACEHOLDER,
                "start": plan.start,
                "spacing": plan.spacing,
            },
        )
        conn.execute(SQLITE_HISTORY, {"history": history_rows(found)})
        conn.execute("COMMIT")
    finally:
        conn.close()


async def build_postgres(
    url: str, plan: Plan, found: dict[str, Kind]
) -> dict[str, float]:
    """The benchmark-only fast path: one statement per chunk of sagas (their
    rows and history), then the count changes folded and ``VACUUM ANALYZE``
    (as autovacuum would). Returns the ms of a count (``count_by_status``,
    the best of three) right after the load, after the fold, and after the
    vacuum: what the deleted changes cost a count until a vacuum."""
    seed = str(time.time())
    index = await retrying(
        url,
        "SELECT indexdef FROM pg_indexes WHERE indexname = $1",
        HISTORY_INDEX,
        fetch=True,
    )
    await retrying(url, f"DROP INDEX IF EXISTS {HISTORY_INDEX}")
    chunk = POSTGRES_CHUNK.format(kind=_kind_case(plan))
    for first in range(0, plan.n, POSTGRES_CHUNK_SIZE):
        await retrying(
            url,
            chunk,
            seed,
            first,
            min(plan.n, first + POSTGRES_CHUNK_SIZE),
            kinds_rows(found),
            ID_PLACEHOLDER,
            plan.start,
            plan.spacing,
            history_rows(found),
        )
    await retrying(url, index)
    counts = {"after the load": await _count_ms(url)}
    await retrying(url, POSTGRES_FOLD)
    counts["after the fold"] = await _count_ms(url)
    for table in POSTGRES_VACUUMED:
        exists = "SELECT to_regclass($1) IS NOT NULL"  # (an earlier schema)
        if await retrying(url, exists, table, fetch=True):
            await retrying(url, f"VACUUM ANALYZE {table}")
    counts["after VACUUM"] = await _count_ms(url)
    return counts


async def _count_ms(url: str) -> float:
    """The best of three runs of the store's ``count_by_status`` query."""
    import asyncpg  # noqa: PLC0415 - this store only

    from sagakit.adapters.store.sql import queries  # noqa: PLC0415

    conn = await asyncpg.connect(url, timeout=10)
    try:
        statement = await conn.prepare(queries("postgres")["count_by_status"])
        times = []
        for _ in range(3):
            started = time.perf_counter()
            await statement.fetch()
            times.append(time.perf_counter() - started)
        return min(times) * 1000
    finally:
        await conn.close()


async def retrying(url: str, sql: str, *args: Any, fetch: bool = False) -> Any:
    """Run one statement on a new connection; after a lost connection (a
    restart of the server), wait and run it again: its transaction was
    rolled back."""
    import asyncpg  # noqa: PLC0415 - this store only

    for attempt in range(30):
        try:
            conn = await asyncpg.connect(url, timeout=10)
            try:
                if fetch:
                    return await conn.fetchval(sql, *args)
                return await conn.execute(sql, *args)
            finally:
                await conn.close()
        except (
            OSError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError,
        ) as exc:
            if attempt == 29:
                raise
            print(f"note: {type(exc).__name__} while building; retrying")
            await asyncio.sleep(2)
    return None
