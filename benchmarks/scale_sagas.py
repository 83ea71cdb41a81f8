"""Costs at scale: a store holding 100k or 1M sagas, against an empty one.

Builds a store of ``--n`` stored sagas, then prints, each with its ratio:

- operator reads, each timed ``--repeats`` times after a warm-up call (median
  and slowest, in ms) next to the floor, a read of one saga by its full id:
  ``show`` by an 8-character id prefix (``sagakit show``: the saga, its
  history, its sub-sagas), per-status counts (the dashboard's summary, all
  sagas and one saga name) and ``list`` with each filter, an empty status
  and an unknown name included; the target is under 20 ms each;
- ``Orchestrator.recover()`` of ``--unfinished`` unfinished sagas, all of
  one definition, created among the others and behind ``--other`` older
  unfinished sagas of a definition this process does not register: how many
  it resumed in one call, how many are left, and how long it took;
- throughput of a 3-step saga (one at a time, and ``--concurrency`` in
  flight) on the full store against a fresh empty store of the same kind, the
  two alternating for ``--rounds`` rounds; the target is >= 0.9x of empty.

Building the store is a benchmark-only fast path: rows go straight into the
tables with one ``INSERT ... SELECT`` per table (``generate_series`` on
PostgreSQL, a recursive CTE on SQLite), their state and history copied from
sagas the library really ran; nothing else should write sagakit's tables this
way. The stored sagas: 90% ``succeeded``, 6% ``compensated``, 3% ``failed``,
1% ``compensation_failed`` (none ``compensating``: the empty status), one in
ten (by hundreds) named ``scale_refund`` and the others ``scale_order``. PostgreSQL gets
``VACUUM ANALYZE`` after the build (autovacuum would run it); SQLite gets
nothing (sagakit never runs ``ANALYZE`` there).

Numbers are printed (and written with ``--json``), never asserted.

    python benchmarks/scale_sagas.py --store sqlite --n 1000000
    python benchmarks/scale_sagas.py --store postgres --n 100000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step, admin
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.store.rows import dumps
from sagakit.errors import SagaNotFound
from sagakit.ports.store import SagaStore

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DSN_ENV = "SAGAKIT_TEST_POSTGRES_URL"
TARGET_MS = 20.0
TARGET_THROUGHPUT = 0.9  # full store / empty store
POOL_SIZE = 20
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
    saga_id, step, kind, attempt, outcome, result, error, started_at, finished_at)
SELECT s.saga_id, h.step, h.kind, h.attempt, h.outcome, h.result, h.error,
       s.created_at + h.started_at, s.created_at + h.finished_at
  FROM sagakit_saga s CROSS JOIN h
 WHERE h.kind_of = CASE
        WHEN s.saga_name = 'scale_other' THEN 'other'
        WHEN s.saga_name = 'scale_recover' THEN 'recover'
        ELSE s.status END
 ORDER BY s.rowid, h.n
"""

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
    saga_id, step, kind, attempt, outcome, result, error, started_at, finished_at)
SELECT s.saga_id, h.step, h.kind, h.attempt, h.outcome,
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


HISTORY_INDEX = "sagakit_step_history_saga"
"""Dropped while the history is written, then made again from its own DDL:
sorting once is about twice as fast as millions of random inserts."""


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
        (index,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = ?", (HISTORY_INDEX,)
        ).fetchone()
        conn.execute(f"DROP INDEX {HISTORY_INDEX}")
        conn.execute(SQLITE_HISTORY, {"history": history_rows(found)})
        conn.execute(index)
        conn.execute("COMMIT")
    finally:
        conn.close()


async def build_postgres(url: str, plan: Plan, found: dict[str, Kind]) -> None:
    """The benchmark-only fast path: one statement per chunk of sagas (their
    rows and history), then ``VACUUM ANALYZE`` (as autovacuum would)."""
    seed = str(time.time())
    index = await _retrying(
        url,
        "SELECT indexdef FROM pg_indexes WHERE indexname = $1",
        HISTORY_INDEX,
        fetch=True,
    )
    await _retrying(url, f"DROP INDEX IF EXISTS {HISTORY_INDEX}")
    chunk = POSTGRES_CHUNK.format(kind=_kind_case(plan))
    for first in range(0, plan.n, POSTGRES_CHUNK_SIZE):
        await _retrying(
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
    await _retrying(url, index)
    await _retrying(url, "VACUUM ANALYZE sagakit_saga")
    await _retrying(url, "VACUUM ANALYZE sagakit_step_history")


async def _retrying(url: str, sql: str, *args: Any, fetch: bool = False) -> Any:
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


# -- stores ----------------------------------------------------------------------


def _next_door(name: str) -> ModuleType:
    """A benchmark module next to this one (only ``--store postgres`` needs
    ``postgres_throughput``, and with it asyncpg)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module(name)


@dataclass
class Stores:
    """Where the full and the empty store live, and how to open them."""

    kind: str
    full: str  # a SQLite path or a PostgreSQL URL
    empty: str

    async def open(self, where: str) -> SagaStore:
        if self.kind == "sqlite":
            return SQLiteStore(where)
        from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415

        return await PostgresStore.connect(where, max_size=POOL_SIZE)


@asynccontextmanager
async def stores(args: argparse.Namespace) -> AsyncIterator[Stores]:
    if args.store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="sagakit-scale-", dir=args.dir) as tmp:
            yield Stores("sqlite", f"{tmp}/full.db", f"{tmp}/empty.db")
        return
    pg = _next_door("postgres_throughput")
    names = [f"{args.db_prefix}_full", f"{args.db_prefix}_empty"]
    for name in names:
        await pg.recreate_database(args.dsn, name)
    try:
        yield Stores("postgres", *(pg.database_url(args.dsn, name) for name in names))
    finally:
        if not args.keep:
            for name in names:
                await pg.recreate_database(args.dsn, name, create=False)


async def build(where: Stores, plan: Plan) -> float:
    """Migrate both stores and fill the full one; returns the seconds taken."""
    for place in (where.full, where.empty):
        await (await where.open(place)).close()  # migrates
    found = await kinds()
    started = time.perf_counter()
    if where.kind == "sqlite":
        build_sqlite(Path(where.full), plan, found)
    else:
        await build_postgres(where.full, plan, found)
    return time.perf_counter() - started


# -- operator reads --------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    key: str
    what: str
    runs: list[float]  # seconds
    rows: int

    @property
    def ms(self) -> float:
        return statistics.median(self.runs) * 1000

    @property
    def slowest_ms(self) -> float:
        return max(self.runs) * 1000


async def timed(
    repeats: int, call: Callable[[], Awaitable[int]]
) -> tuple[list[float], int]:
    rows = await call()  # warm-up
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        rows = await call()
        runs.append(time.perf_counter() - started)
    return runs, rows


async def reads(store: SagaStore, plan: Plan, repeats: int) -> list[Timing]:
    (newest,) = await store.list_sagas(limit=1, status=SagaStatus.SUCCEEDED)
    some_id = newest.saga_id
    middle = plan.start + plan.n * plan.spacing / 2

    async def show() -> int:
        detail = await admin.show(store, some_id[:8])
        assert detail.record.saga_id == some_id  # noqa: S101 - an 8-hex clash is ~n/4e9
        return 1 + len(detail.history)

    async def show_missing() -> int:
        try:
            await admin.show(store, "g0000000")
        except SagaNotFound:
            return 0
        raise RuntimeError("g0000000 matched a saga")

    async def get() -> int:
        await store.get(some_id)
        return 1

    def counting(name: str | None) -> Callable[[], Awaitable[int]]:
        async def count() -> int:
            return sum((await store.count_by_status(name)).values())

        return count

    def listing(**filters: Any) -> Callable[[], Awaitable[int]]:
        async def listed() -> int:
            return len(await store.list_sagas(limit=50, **filters))

        return listed

    calls: list[tuple[str, str, Callable[[], Awaitable[int]]]] = [
        ("floor-get", "floor: get one saga by its full id", get),
        ("show-prefix", "show by an 8-char id prefix (saga, history, children)", show),
        ("show-missing", "show by a prefix that matches nothing", show_missing),
        ("count", "counts per status, every saga", counting(None)),
        ("count-name", "counts per status of scale_refund", counting("scale_refund")),
        ("list", "list, no filter (50 newest)", listing()),
        (
            "list-status",
            "list --status succeeded",
            listing(status=SagaStatus.SUCCEEDED),
        ),
        ("list-status-rare", "list --status failed", listing(status=SagaStatus.FAILED)),
        (
            "list-status-empty",
            "list --status compensating (none stored)",
            listing(status=SagaStatus.COMPENSATING),
        ),
        ("list-name", "list --saga scale_refund", listing(saga_name="scale_refund")),
        (
            "list-name-status",
            "list --saga scale_refund --status failed",
            listing(saga_name="scale_refund", status=SagaStatus.FAILED),
        ),
        (
            "list-name-empty-status",
            "list --saga scale_refund --status compensating",
            listing(saga_name="scale_refund", status=SagaStatus.COMPENSATING),
        ),
        (
            "list-name-unknown",
            "list --saga nothing (no such saga)",
            listing(saga_name="nothing"),
        ),
        (
            "list-before",
            "list created before the middle",
            listing(created_before=middle),
        ),
        ("list-waiting", "list --waiting", listing(waiting=True)),
    ]
    found = []
    for key, what, call in calls:
        runs, rows = await timed(repeats, call)
        found.append(Timing(key, what, runs, rows))
    return found


# -- recovery --------------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    unfinished: int
    resumed: int
    left: int
    seconds: float


async def recover(store: SagaStore, plan: Plan) -> Recovery:
    orchestrator = Orchestrator(store, [RECOVERED])
    started = time.perf_counter()
    resumed = await orchestrator.recover()
    await orchestrator.drain()
    seconds = time.perf_counter() - started
    await orchestrator.stop_driving()
    counts = await store.count_by_status(RECOVERED.name)
    left = counts.get(SagaStatus.RUNNING, 0) + counts.get(SagaStatus.COMPENSATING, 0)
    return Recovery(plan.unfinished, len(resumed), left, seconds)


# -- throughput ------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """One throughput run: sagas per second of wall clock, and per second of
    this process's CPU time (what the load of other processes moves less;
    on PostgreSQL the server's work is not in it)."""

    wall: float
    cpu: float


async def sagas_per_s(orchestrator: Orchestrator, n: int, concurrency: int) -> Rate:
    loop = asyncio.get_running_loop()
    gc.collect()
    started, cpu = loop.time(), time.process_time()
    for first in range(0, n, concurrency):
        batch = min(concurrency, n - first)
        results = await asyncio.gather(*(orchestrator.run(RUN) for _ in range(batch)))
        if any(r.status is not SagaStatus.SUCCEEDED for r in results):
            raise RuntimeError("a saga did not succeed")
    return Rate(n / (loop.time() - started), n / (time.process_time() - cpu))


async def throughput(
    where: Stores, n: int, concurrency: int, rounds: int
) -> dict[str, dict[str, list[Rate]]]:
    """Rates by row (seq, conc) and store (full, empty), the stores taking
    turns; one store is open at a time (a PostgreSQL server's connections
    are shared with whatever else runs on it)."""
    figures: dict[str, dict[str, list[Rate]]] = {"seq": {}, "conc": {}}
    for round_ in range(rounds):
        for side in ("full", "empty") if round_ % 2 == 0 else ("empty", "full"):
            store = await where.open(where.full if side == "full" else where.empty)
            orchestrator = Orchestrator(store, [RUN])
            try:
                await sagas_per_s(orchestrator, max(1, n // 10), 1)  # warm-up
                for row, conc in (("seq", 1), ("conc", concurrency)):
                    rate = await sagas_per_s(orchestrator, n, conc)
                    figures[row].setdefault(side, []).append(rate)
            finally:
                await orchestrator.close()
    return figures


# -- report ----------------------------------------------------------------------


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--n", type=int, default=100_000, help="stored sagas; default 100000"
    )
    parser.add_argument(
        "--unfinished",
        type=int,
        default=10_000,
        help="of them, unfinished sagas recover() resumes; default 10000",
    )
    parser.add_argument(
        "--other",
        type=int,
        default=1_200,
        help="of them, older unfinished sagas of an unregistered definition;"
        " default 1200",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per read")
    parser.add_argument(
        "--throughput-n", type=int, default=500, help="sagas per throughput run"
    )
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    parser.add_argument(
        "--dsn",
        default=os.environ.get(DSN_ENV) or DEFAULT_DSN,
        help=f"PostgreSQL server (default ${DSN_ENV} or {DEFAULT_DSN}); the "
        "databases PREFIX_full and PREFIX_empty are created next to it",
    )
    parser.add_argument("--db-prefix", default="scale")
    parser.add_argument(
        "--keep", action="store_true", help="keep the PostgreSQL databases"
    )
    parser.add_argument("--dir", type=Path, help="directory of the SQLite files")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    for name in ("n", "repeats", "throughput_n", "concurrency", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.unfinished < 0 or args.other < 0 or args.unfinished + args.other > args.n:
        parser.error("--unfinished and --other must be >= 0 and add up to at most --n")
    if not args.db_prefix.replace("_", "").isalnum():
        parser.error("--db-prefix takes letters, digits and underscores")
    return args


def print_reads(timings: list[Timing]) -> list[dict[str, Any]]:
    floor = timings[0].ms
    print()
    print(
        f"{'read':<23} {'what':<52} {'rows':>7} {'ms':>8} {'slowest':>8} "
        f"{'/floor':>8}  < {TARGET_MS:.0f} ms"
    )
    rows = []
    for t in timings:
        shown = "-" if t.key == "floor-get" else verdict(t.ms < TARGET_MS)
        print(
            f"{t.key:<23} {t.what:<52} {t.rows:>7,} {t.ms:>8.2f} "
            f"{t.slowest_ms:>8.2f} {t.ms / floor:>7.1f}x  {shown}"
        )
        rows.append(
            {
                "key": t.key,
                "library": "sagakit",
                "what": t.what,
                "ms": t.ms,
                "slowest_ms": t.slowest_ms,
                "per_s": 1000 / t.ms,
                "rows": t.rows,
            }
        )
    return rows


def print_recovery(r: Recovery, other: int) -> dict[str, Any]:
    print()
    print(
        f"recover(): resumed {r.resumed:,} of {r.unfinished:,} unfinished sagas "
        f"in one call ({r.resumed / max(1, r.unfinished):.2f}x), {r.left:,} left "
        f"unfinished; {r.seconds:,.2f} s with drain "
        f"({r.resumed / r.seconds:,.0f} sagas/s); behind {other:,} older "
        "unfinished sagas of another definition: "
        f"{verdict(r.resumed == r.unfinished and r.left == 0)}"
    )
    return {
        "key": "recover",
        "library": "sagakit",
        "resumed": r.resumed,
        "unfinished": r.unfinished,
        "left": r.left,
        "seconds": r.seconds,
        "sagas_per_s": r.resumed / r.seconds,
    }


def print_throughput(
    figures: dict[str, dict[str, list[Rate]]], concurrency: int
) -> list[dict[str, Any]]:
    print()
    print(
        f"{'throughput':<10} {'in flight':>9} {'empty':>9} {'full':>9} "
        f"{'full/empty':>10}   {'cpu: empty':>10} {'full':>9} {'full/empty':>10}"
    )
    rows = []
    for row, by_side in figures.items():
        wall = {s: statistics.median(r.wall for r in by_side[s]) for s in by_side}
        cpu = {s: statistics.median(r.cpu for r in by_side[s]) for s in by_side}
        ratio = wall["full"] / wall["empty"]
        print(
            f"{row:<10} {1 if row == 'seq' else concurrency:>9} "
            f"{wall['empty']:>9,.0f} {wall['full']:>9,.0f} {ratio:>9.2f}x   "
            f"{cpu['empty']:>10,.0f} {cpu['full']:>9,.0f} "
            f"{cpu['full'] / cpu['empty']:>9.2f}x  >= {TARGET_THROUGHPUT}x "
            f"(wall): {verdict(ratio >= TARGET_THROUGHPUT)}"
        )
        rows.extend(
            {
                "key": f"{row}-{side}",
                "library": "sagakit",
                "sagas_per_s": wall[side],
                "sagas_per_cpu_s": cpu[side],
                "runs": [r.wall for r in by_side[side]],
            }
            for side in ("empty", "full")
        )
    print(
        "sagas per second of wall clock, and per second of this process's CPU "
        "(medians of the rounds)"
    )
    return rows


async def run(args: argparse.Namespace) -> tuple[float, list[dict[str, Any]]]:
    """Build, measure and print; the build's seconds and the JSON rows."""
    plan = Plan(args.n, args.unfinished, args.other)
    async with stores(args) as where:
        built = await build(where, plan)
        print(
            f"built {plan.n:,} stored sagas in {built:,.1f} s "
            f"({plan.n / built:,.0f}/s, history included)"
        )
        store = await where.open(where.full)
        try:
            rows = print_reads(await reads(store, plan, args.repeats))
            rows.append(print_recovery(await recover(store, plan), plan.other))
        finally:
            await store.close()
        figures = await throughput(
            where, args.throughput_n, args.concurrency, args.rounds
        )
        rows += print_throughput(figures, args.concurrency)
    return built, rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = load_average()
    started = time.perf_counter()
    print(
        f"sagakit at scale on {args.store}: {args.n:,} stored sagas, "
        f"{args.unfinished:,} unfinished to recover; python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs; reads: median of "
        f"{args.repeats} after a warm-up; throughput: {args.throughput_n} sagas "
        f"per run, median of {args.rounds} rounds"
    )
    built, rows = asyncio.run(run(args))
    load = load_average()
    elapsed = time.perf_counter() - started
    print()
    print(
        f"total time {elapsed:,.1f} s; load average {load_at_start} at the start, "
        f"{load} at the end (other work on the machine skews the numbers)"
    )
    if args.json is not None:
        meta = {
            "store": args.store,
            "n": args.n,
            "unfinished": args.unfinished,
            "built_seconds": built,
            "seconds": elapsed,
            "load_average": {"start": load_at_start, "end": load},
        }
        args.json.write_text(
            json.dumps({"meta": meta, "results": rows}, indent=2) + "\n"
        )
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
