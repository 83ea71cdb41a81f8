"""CPU per saga on the engine and the driver alone: the hot path a change to
either must leave as it was.

Rows, in sagas per CPU second of this process (``time.process_time``, so
other work on a shared machine skews them much less than wall time; the
median of ``--repeats`` runs after a warm-up):

engine   ``decide`` over the events of a 3-step saga that succeeds (started,
         three successes): the engine with no I/O at all
memory   ``Orchestrator.run`` of that saga on ``InMemoryStore``, three async
         no-op steps, one saga at a time (engine, driver, store calls)
locked   the same with a semantic lock (a key of its own per saga) on the
         first step and one held until the second: what locks cost when
         nobody else wants the key (on a tree that has them)
floor    the same three awaits with a record written per transition into a
         dict, hand-written: what any saga runner must do at the least
saga-py  saga-py's in-memory run of three no-op steps (a peer), when the
         ``bench`` extra is installed

Run it under ``against_commit.py`` to compare a change with the commit
before it (the floor and saga-py rows are the noise to read it against)::

    python benchmarks/against_commit.py HEAD~1 benchmarks/hot_path.py \\
        --rounds 5 -- --n 3000 --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sagakit import Orchestrator, Saga, Step
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.engine import SagaStarted, StepSucceeded, decide, initial_state

try:
    import saga as saga_py
except ImportError:  # the `bench` extra is not installed
    saga_py = None


async def act(ctx: Any) -> None:
    return None


async def undo(ctx: Any) -> None:
    return None


SAGA = Saga(
    "hot_path",
    [
        Step("one", act, compensate=undo),
        Step("two", act, compensate=undo),
        Step("three", act, compensate=undo),
    ],
)


def _locked_saga() -> Saga[Any] | None:
    try:
        from sagakit import Lock  # noqa: PLC0415 - an older tree has none
    except ImportError:
        return None
    return Saga(
        "hot_path_locked",
        [
            Step("one", act, compensate=undo, locks=["a:{ctx.k}"]),
            Step("two", act, compensate=undo, locks=[Lock("b:{ctx.k}", until="two")]),
            Step("three", act, compensate=undo),
        ],
    )


LOCKED = _locked_saga()


def engine(n: int) -> None:
    for i in range(n):
        state = initial_state(SAGA, f"s{i}")
        state = decide(SAGA, state, SagaStarted(1.0)).state
        for step in ("one", "two", "three"):
            state = decide(SAGA, state, StepSucceeded(step, None, 2.0)).state


def memory(n: int) -> None:
    async def go() -> None:
        orch = Orchestrator(InMemoryStore(), [SAGA])
        for _ in range(n):
            await orch.run(SAGA, {})

    asyncio.run(go())


def locked(n: int) -> None:
    assert LOCKED is not None  # noqa: S101 - only called when it is there

    async def go() -> None:
        orch = Orchestrator(InMemoryStore(), [LOCKED])
        for i in range(n):
            await orch.run(LOCKED, {"k": i})

    asyncio.run(go())


def floor(n: int) -> None:
    async def go() -> None:
        records: dict[str, dict[str, Any]] = {}
        for i in range(n):
            saga_id = f"s{i}"
            record: dict[str, Any] = {"status": "running", "steps": {}}
            records[saga_id] = dict(record)
            for step in ("one", "two", "three"):
                await act(None)
                record["steps"][step] = "succeeded"
                records[saga_id] = dict(record)
            record["status"] = "succeeded"
            records[saga_id] = dict(record)

    asyncio.run(go())


def saga_py_run(n: int) -> None:
    assert saga_py is not None  # noqa: S101 - only called when it is there
    builder = saga_py.SagaBuilder()
    for _step in range(3):
        builder.action(lambda: None, lambda: None)
    saga = builder.build()  # built once, like a sagakit definition
    for _ in range(n):
        saga.execute()


def measure(work: Callable[[int], None], n: int, repeats: int) -> float:
    """Sagas per CPU second: the median of ``repeats`` runs after a warm-up."""
    work(max(1, n // 10))
    rates = []
    for _ in range(repeats):
        began = time.process_time()
        work(n)
        rates.append(n / max(time.process_time() - began, 1e-9))
    return statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="sagas per run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.n < 1 or args.repeats < 1:
        parser.error("--n and --repeats must be >= 1")
    load = f"{os.getloadavg()[0]:.2f}"
    rows: list[tuple[str, str, Callable[[int], None], int]] = [
        ("engine", "sagakit", engine, args.n * 10),
        ("memory", "sagakit", memory, args.n),
        ("floor", "floor", floor, args.n * 10),
    ]
    if LOCKED is not None:
        rows.insert(2, ("locked", "sagakit", locked, args.n))
    if saga_py is not None:
        rows.append(("saga-py", "saga-py", saga_py_run, args.n * 10))
    results = []
    for key, library, work, n in rows:
        rate = measure(work, n, args.repeats)
        results.append({"key": key, "library": library, "sagas_per_s": rate, "n": n})
    floor_rate = next(r["sagas_per_s"] for r in results if r["key"] == "floor")
    print(f"{'row':<10} {'library':<8} {'sagas/CPU s':>14} {'vs floor':>9}")
    for r in results:
        ratio = r["sagas_per_s"] / floor_rate
        rate = f"{r['sagas_per_s']:,.0f}"
        print(f"{r['key']:<10} {r['library']:<8} {rate:>14} {ratio:>8.3f}x")
    print(
        f"load average (1 min) {load} at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    if args.json is not None:
        args.json.write_text(json.dumps({"results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
