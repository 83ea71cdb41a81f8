"""Several processes on one database: each saga is driven by one live process.

The README's embedded pattern (``Orchestrator(store)``, ``recover()`` at
start-up) in several real processes at once, on SQLite and PostgreSQL: a
process takes only the sagas of a dead one, never a live peer's, and a
``sagakit worker`` drains on SIGTERM. Steps log ``begin``/``end`` lines with
their pid (see ``owned_app.py``), so the effects file shows every run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from sagakit import SagaStatus
from sagakit.adapters.store import open_store_async
from sagakit.runtime import SagaClient
from tests.e2e.processes import Procs, begun_by, runs, wait_until

pytestmark = pytest.mark.e2e


async def _committed(url: str) -> dict[str, tuple[SagaStatus, list[str]]]:
    store = await open_store_async(url)
    try:
        found = {}
        for record in await store.list_sagas(saga_name="owned", limit=10_000):
            history = await store.history(record.saga_id)
            steps = [
                h.step or ""
                for h in history
                if h.kind == "action" and h.outcome == "succeeded"
            ]
            found[record.saga_id] = (record.status, steps)
        return found
    finally:
        await store.close()


def check_committed_once(url: str, count: int) -> None:
    """Every saga succeeded, and each of its steps was committed once."""
    committed = asyncio.run(_committed(url))
    assert len(committed) == count
    for saga_id, (status, steps) in committed.items():
        assert status is SagaStatus.SUCCEEDED, saga_id
        assert steps == ["one", "two", "three"], (saga_id, steps)


def check_runs(effects: Path, count: int, killed: int | None = None) -> int:
    """Each step ran once, or twice only when the killed process began it
    first (in flight at the SIGKILL); returns how many ran twice."""
    found = runs(effects)
    assert len(found) == count * 3
    twice = 0
    for key, lines in found.items():
        begins = [pid for kind, pid in lines if kind == "begin"]
        if len(begins) == 1:
            continue
        assert len(begins) == 2, (key, lines)
        assert begins[0] == killed, (key, lines)
        assert ("end", begins[1]) in lines, (key, lines)
        twice += 1
    return twice


def test_four_embedded_processes_one_killed(procs: Procs) -> None:
    """500 sagas started by 4 processes (staggered), each calling recover()
    over and over; one is SIGKILLed mid-run and the others finish its sagas."""
    share, total = 125, 500
    started = []
    for n in range(4):
        args = ("embedded", str(n * share), str(share), str(total), "1.0")
        started.append(procs.start(*args))
        time.sleep(0.4)
    victim = started[1]

    def mid_run() -> bool:
        # all its sagas exist (their first step began: it starts right after
        # the create), else the others would wait for TOTAL sagas forever
        found = runs(procs.effects)
        created = all((f"s{i}", "one") in found for i in range(share, 2 * share))
        return created and begun_by(procs.effects, victim.pid) > share

    wait_until("the victim to be mid-run", mid_run)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    killed_at = time.monotonic()
    mine = {
        key for key, lines in runs(procs.effects).items() if lines[0][1] == victim.pid
    }

    def taken() -> bool:
        found = runs(procs.effects)
        return any(
            len(found[key]) > 2 for key in mine if found[key][-1][1] != victim.pid
        ) or any(
            (saga, step) not in mine and saga in {s for s, _ in mine}
            for saga, step in found
        )

    wait_until("a survivor to take the victim's sagas", taken)
    pickup = time.monotonic() - killed_at
    took = 0
    for proc in started:
        if proc is not victim:
            took += int(procs.finish(proc).split("took ")[-1].split()[0])
    assert took > 0  # the victim's unfinished sagas, and nothing else
    twice = check_runs(procs.effects, total, killed=victim.pid)
    check_committed_once(procs.url, total)
    print(
        f"picked up {pickup:.2f}s after the SIGKILL; {took} taken,",
        f"{twice} steps ran twice",
    )
    assert pickup < 10  # a dead process on this host: no waiting out its lease


def test_a_second_process_takes_nothing_from_a_live_one(procs: Procs) -> None:
    """The issue's scenario: B starts while A is mid-saga and calls recover():
    it used to take all of A's sagas and re-run their steps (20 of 20)."""
    first = procs.start("embedded", "0", "20", "20", "1.0")
    wait_until("A's steps to run", lambda: begun_by(procs.effects, first.pid) >= 20)
    second = procs.start("watch", "2.0")
    assert procs.finish(second).strip().endswith("took 0")
    assert procs.finish(first).strip().endswith("took 0")
    assert check_runs(procs.effects, 20) == 0
    check_committed_once(procs.url, 20)


def test_sagakit_worker_drains_on_sigterm(procs: Procs) -> None:
    """SIGTERM: the steps in flight finish, the worker exits 0 and releases its
    sagas; a second worker finishes them at once (not after the 30 s lease),
    and no step runs twice."""
    from tests.e2e.owned_app import Ctx, saga  # noqa: PLC0415

    async def submit() -> None:
        store = await open_store_async(procs.url)
        client = SagaClient(store, [saga])
        for i in range(20):
            await client.submit(saga, Ctx(index=i, pause=0.5), saga_id=f"s{i}")
        await store.close()

    asyncio.run(submit())
    target = "tests.e2e.owned_app:saga"
    first = procs.start("worker", target, "--id", "first", module=True)
    wait_until(
        "the first worker's steps to run",
        lambda: begun_by(procs.effects, first.pid) >= 10,
    )
    first.send_signal(signal.SIGTERM)
    procs.finish(first, seconds=10)
    begun = runs(procs.effects)
    for key, lines in begun.items():  # what began there ended there
        assert ("end", first.pid) in lines, (key, lines)
    assert len(begun) < 60  # it stopped before finishing everything

    handed_at = time.monotonic()
    second = procs.start("worker", target, "--until-idle", module=True)
    procs.finish(second, seconds=25)
    assert time.monotonic() - handed_at < 15  # released, not left to expire
    assert check_runs(procs.effects, 20) == 0
    check_committed_once(procs.url, 20)
