"""Durable timers at scale: many workflow instances asleep, a few becoming due.

Builds ``--n`` instances of one ``WorkflowApp`` asleep on a timer a day away
(SQLite or PostgreSQL), then measures, in this process:

1. the store's ``next_due`` and an empty ``claim`` (nothing due), median ms,
   next to a primary-key ``get`` (one index probe: the floor);
2. the idle worker (``app.run``) over ``--idle`` seconds: process CPU time /
   wall time, and the store calls it makes per second;
3. ``--rate`` x ``--seconds`` more instances due one after another at
   ``--rate`` per second: a fresh worker runs them, and each step records
   how late it started (now - due): p50, p99 and max. Two floors fire the
   same timers in the same run: a hand-written one (due times kept in
   memory, one ``UPDATE`` and commit per timer on the store's own
   connection, no framework) and bare ``loop.call_at`` timers (the event
   loop alone, under the same machine load).

With ``--against REV`` the same workload first runs on ``src/`` of ``REV``
(``git archive``, as ``against_commit.py`` does) in a subprocess, and both
columns are printed with their ratio. Figures are printed (and written with
``--json``), never asserted. The load average is printed at the start and end.

The instances are written by a documented fast path (``timer_store.py``):
the rows the stores write, many per transaction.

    python benchmarks/scale_timers.py [--store sqlite|postgres] [--n 100000]
        [--rate 2000] [--seconds 10] [--idle 12] [--against main] [--json out]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sagakit.ports.workflow_store import WorkflowStore
from sagakit.workflow import WorkflowApp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from against_commit import export_src
from timer_store import (
    APP,
    ASLEEP_FOR,
    Fired,
    hand_written,
    insert,
    instance,
    loop_floor,
    open_store,
    percentile,
)

QUERY_REPEATS = 21
WARM_UP = 1.0  # seconds of a fresh worker not counted as idle
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
HERE = Path(__file__).resolve()


@dataclass
class Figures:
    """What one run measured (``--json`` writes it)."""

    store: str
    n: int
    due: int
    load_start: float
    build_per_s: float = 0.0
    get_ms: float = 0.0
    next_due_ms: float = 0.0
    claim_ms: float = 0.0
    idle_cpu_pct: float = 0.0
    idle_calls_per_s: float = 0.0
    fired: int = 0
    fired_per_s: float = 0.0
    late_p50_s: float = 0.0
    late_p99_s: float = 0.0
    late_max_s: float = 0.0
    fire_cpu_pct: float = 0.0
    cpu_ms_per_timer: float = 0.0
    floor_per_s: float = 0.0
    floor_p50_s: float = 0.0
    floor_p99_s: float = 0.0
    floor_cpu_pct: float = 0.0
    loop_p99_s: float = 0.0
    load_end: float = 0.0
    notes: list[str] = field(default_factory=list)


# -- the store and the app ------------------------------------------------------


class Counting:
    """A store that counts the calls made on it (claims, next_due, ...)."""

    def __init__(self, store: WorkflowStore) -> None:
        self.store = store
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.store, name)
        if not callable(found):
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return found(*args, **kwargs)

        return counted


def make_app(store: Any, fired: Fired) -> WorkflowApp:
    """The app: one step that records when it ran and ends the instance."""
    app = WorkflowApp(APP, store)

    @app.step
    async def wake(input: Any) -> None:
        fired.add(input["due"])

    return app


# -- measurements ----------------------------------------------------------------


async def median_ms(call: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(QUERY_REPEATS):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def measure_queries(app: WorkflowApp, figures: Figures) -> None:
    store, steps, fp = app.store, list(app.steps), app.fingerprint

    async def claim() -> None:
        found = await store.claim(
            APP, "probe", steps, now=time.time(), lease=30.0, limit=app.batch,
            version=app.version, fingerprint=fp,
        )  # fmt: skip
        if found:
            raise RuntimeError("the probe claimed an instance; none is due")

    figures.get_ms = await median_ms(lambda: store.get(APP, "sleep-0"))
    figures.next_due_ms = await median_ms(
        lambda: store.next_due(APP, steps, version=app.version, fingerprint=fp)
    )
    figures.claim_ms = await median_ms(claim)


@contextlib.asynccontextmanager
async def worker(app: WorkflowApp) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def measure_idle(
    app: WorkflowApp, counting: Counting, seconds: float, figures: Figures
) -> None:
    async with worker(app):
        await asyncio.sleep(WARM_UP)  # its first look (and report) are not idling
        calls, cpu, wall = counting.calls, time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        wall = time.perf_counter() - wall
        figures.idle_cpu_pct = 100 * (time.process_time() - cpu) / wall
        figures.idle_calls_per_s = (counting.calls - calls) / wall


async def due_round(
    store: WorkflowStore, app: WorkflowApp, args: argparse.Namespace, name: str
) -> list[float]:
    """Write ``--rate`` x ``--seconds`` instances due one after another at
    ``--rate``/s, from a second or so after they are written."""
    count = int(args.rate * args.seconds)
    lead = 1.0 + 2.0 * count / max(args.build_per_s, 1.0)
    first = time.time() + lead
    dues = [first + i / args.rate for i in range(count)]
    await insert(store, [instance(app, f"{name}-{i}", d) for i, d in enumerate(dues)])
    return dues


@dataclass
class Round:
    """How one round of due timers went."""

    late: list[float]  # seconds, one per timer (what never fired: a lower bound)
    per_s: float  # fired per second, from the first due to the last firing
    cpu_pct: float  # of the whole round, from before the first due time
    cpu_s: float
    notes: list[str]


async def fire(
    run: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
    fired: Fired,
    dues: list[float],
    grace: float,
) -> Round:
    """Run ``run`` until every timer of ``dues`` fired, or ``grace`` seconds
    after the last was due."""
    fired.expect(len(dues))
    cpu, wall = time.process_time(), time.perf_counter()
    async with run():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fired.all.wait(), dues[-1] + grace - time.time())
        stopped = time.time()
    cpu = time.process_time() - cpu
    cpu_pct = 100 * cpu / (time.perf_counter() - wall)
    times = fired.times[: len(dues)]
    late = [at - due for due, at in times]
    notes = []
    if len(times) < len(dues):
        late += [stopped - due for due in dues[len(times) :]]
        notes.append(
            f"{len(dues) - len(times)} of {len(dues)} timers had not fired "
            f"{grace:.0f} s after the last was due: counted as late as that"
        )
    span = max((at for _, at in times), default=dues[0]) - dues[0]
    return Round(late, len(times) / max(span, 1e-9), cpu_pct, cpu, notes)


async def measure_firing(
    app: WorkflowApp, fired: Fired, args: argparse.Namespace, figures: Figures
) -> None:
    store: Any = app.store
    dues = await due_round(store, app, args, "due")
    ran = await fire(lambda: worker(app), fired, dues, args.grace)
    figures.fired = min(len(fired.times), len(dues))
    figures.fired_per_s, figures.fire_cpu_pct = ran.per_s, ran.cpu_pct
    figures.late_p50_s = percentile(ran.late, 50)
    figures.late_p99_s = percentile(ran.late, 99)
    figures.late_max_s = max(ran.late)
    figures.cpu_ms_per_timer = 1000 * ran.cpu_s / max(figures.fired, 1)
    figures.notes += ran.notes
    dues = await due_round(store, app, args, "floor")
    floor = await fire(
        await hand_written(store.store, fired, dues), fired, dues, args.grace
    )
    figures.floor_per_s = floor.per_s
    figures.floor_p50_s = percentile(floor.late, 50)
    figures.floor_p99_s = percentile(floor.late, 99)
    figures.floor_cpu_pct = floor.cpu_pct
    figures.notes += [f"hand-written floor: {note}" for note in floor.notes]
    figures.loop_p99_s = await loop_floor(args.rate, len(dues))


async def measure(args: argparse.Namespace) -> Figures:
    count = int(args.rate * args.seconds)
    figures = Figures(args.store, args.n, count, load_start=os.getloadavg()[0])
    fired = Fired()
    async with open_store(args) as raw:
        counting = Counting(raw)
        app = make_app(counting, fired)
        far = time.time() + ASLEEP_FOR
        sleeping = [instance(app, f"sleep-{i}", far + i / 1000) for i in range(args.n)]
        start = time.perf_counter()
        await insert(raw, sleeping)
        figures.build_per_s = args.build_per_s = args.n / (time.perf_counter() - start)
        del sleeping
        await measure_queries(app, figures)
        await measure_idle(app, counting, args.idle, figures)
        await measure_firing(app, fired, args, figures)
    figures.load_end = os.getloadavg()[0]
    return figures


# -- the report -------------------------------------------------------------------

ROWS = [
    ("build_per_s", "sleeping instances written per second (fast path)", ",.0f"),
    ("get_ms", "get by primary key, ms (floor: one index probe)", ".3f"),
    ("next_due_ms", "next_due, nothing due for a day, ms", ".3f"),
    ("claim_ms", "claim, nothing due, ms", ".3f"),
    ("idle_cpu_pct", "idle worker CPU, % of a core", ".2f"),
    ("idle_calls_per_s", "idle worker store calls per second", ".1f"),
    ("fired_per_s", "timers fired per second", ",.0f"),
    ("late_p50_s", "lateness p50, s", ".3f"),
    ("late_p99_s", "lateness p99, s", ".3f"),
    ("late_max_s", "lateness max, s", ".3f"),
    ("fire_cpu_pct", "worker CPU while firing, % of a core", ".1f"),
    ("cpu_ms_per_timer", "worker CPU per timer fired, ms", ".3f"),
    ("floor_per_s", "hand-written floor: timers fired per second", ",.0f"),
    ("floor_p50_s", "hand-written floor: lateness p50, s", ".3f"),
    ("floor_p99_s", "hand-written floor: lateness p99, s", ".3f"),
    ("floor_cpu_pct", "hand-written floor: CPU, % of a core", ".1f"),
    ("loop_p99_s", "bare loop.call_at timers: lateness p99, s", ".3f"),
]


def report(figures: Figures, before: Figures | None, rev: str | None) -> list[str]:
    """The table: a figure a row; with ``before``, its column first and the
    ratio this tree / ``rev``."""
    head = f"{'figure':<52}"
    if before is not None:
        head += f" {rev or 'before':>11}"
    head += f" {'this tree':>11}"
    if before is not None:
        head += f" {'ratio':>9}"
    lines = [head, "-" * len(head)]
    for key, label, fmt in ROWS:
        now = getattr(figures, key)
        line = f"{label:<52}"
        if before is not None:
            line += f" {format(getattr(before, key), fmt):>11}"
        line += f" {format(now, fmt):>11}"
        if before is not None:
            then = getattr(before, key)
            line += f" {f'{now / then:.3g}x' if then else 'n/a':>9}"
        lines.append(line)
    for figs, who in ((before, rev), (figures, "this tree")):
        if figs is None:
            continue
        floor = figs.floor_p99_s
        ratio = f"{figs.late_p99_s / floor:.3g}x" if floor else "n/a"
        lines.append(f"lateness p99 / hand-written floor p99 ({who}): {ratio}")
        lines += [f"note ({who}): {note}" for note in figs.notes]
    return lines


def run_before(rev: str, args: argparse.Namespace) -> Figures:
    """This workload on ``src/`` of ``rev``, in a subprocess."""
    forward = [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in ("store", "n", "rate", "seconds", "idle", "grace", "dsn", "db_name")
    ]
    with tempfile.TemporaryDirectory(prefix="sagakit-timers-before-") as tmp:
        src = export_src(rev, Path(tmp))
        out = Path(tmp) / "before.json"
        env = dict(os.environ, PYTHONPATH=str(src))
        print(f"running the same workload on {rev} first ...", flush=True)
        done = subprocess.run(  # noqa: S603 - this script, on another src
            [sys.executable, str(HERE), *forward, "--json", str(out)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            sys.stderr.write(done.stdout + done.stderr)
            sys.exit(f"scale_timers: the run on {rev} failed")
        return Figures(**json.loads(out.read_text())["figures"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--n", type=int, default=100_000, help="sleeping instances")
    parser.add_argument("--rate", type=float, default=2000.0, help="timers due per s")
    parser.add_argument("--seconds", type=float, default=10.0, help="of due timers")
    parser.add_argument("--idle", type=float, default=12.0, help="idle seconds timed")
    parser.add_argument("--grace", type=float, default=30.0, help="wait after last")
    parser.add_argument("--against", metavar="REV", help="also run on src/ of REV")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--dsn", default=os.environ.get("SAGAKIT_TEST_POSTGRES_URL", DEFAULT_DSN)
    )
    parser.add_argument("--db-name", default="bench_timers", help="made, dropped")
    args = parser.parse_args(argv)
    if min(args.n, args.rate, args.seconds, args.idle, args.grace) <= 0:
        parser.error("--n, --rate, --seconds, --idle and --grace must be > 0")
    if int(args.rate * args.seconds) < 1:
        parser.error("--rate x --seconds must make at least one timer")
    if not args.db_name.replace("_", "").isalnum():
        parser.error("--db-name takes letters, digits and underscores")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    count = int(args.rate * args.seconds)
    where = args.store if args.store == "sqlite" else f"postgres ({args.db_name})"
    print(
        f"durable timers at scale: {args.n:,} instances asleep on {where}, then "
        f"{count:,} due at {args.rate:,.0f}/s; python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at the start"
    )
    before = None if args.against is None else run_before(args.against, args)
    figures = asyncio.run(measure(args))
    for line in report(figures, before, args.against):
        print(line)
    loads = [
        f"{f.load_start:.2f} -> {f.load_end:.2f} ({who})"
        for f, who in ((before, args.against), (figures, "this tree"))
        if f is not None
    ]
    print(f"load average (1 min), start -> end of each run: {', '.join(loads)}")
    if args.json is not None:
        written: dict[str, Any] = {"figures": asdict(figures)}
        if before is not None:
            written["before"] = {"rev": args.against, **asdict(before)}
        args.json.write_text(json.dumps(written, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
