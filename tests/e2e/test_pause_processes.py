"""A pause sent from another process while a worker runs one of the saga's steps.

A ``sagakit worker`` process drives the saga; ``sagakit pause`` and
``sagakit unpause``, other processes, act on it meanwhile (SQLite and
PostgreSQL). The worker keeps the saga: the step in flight is recorded once,
the next one waits, and unpause runs it once, in the worker. Steps write
``begin``/``end`` lines with their pid (``pause_app.py``).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sagakit import SagaStatus
from sagakit.adapters.store import open_store_async
from sagakit.ports.store import SagaStore
from sagakit.runtime import SagaClient
from tests.e2e import pause_app
from tests.e2e.pause_app import gate
from tests.e2e.processes import Procs, runs

pytestmark = pytest.mark.e2e

TARGET = "tests.e2e.pause_app"
QUIET = 1.5
"""How long nothing may start while the saga is paused (longer than the
worker's look at the paused sagas it parks)."""


@pytest.fixture
async def store(procs: Procs) -> AsyncIterator[SagaStore]:
    opened = await open_store_async(procs.url)
    yield opened
    await opened.close()


async def eventually(
    what: str, check: Callable[[], Awaitable[bool]], seconds: float = 30
) -> None:
    try:
        async with asyncio.timeout(seconds):
            while not await check():  # noqa: ASYNC110 - another process acts
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


def began(procs: Procs, saga: str, step: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (saga, step) in runs(procs.effects)

    return check


def ended(store: SagaStore, saga_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await store.get(saga_id)).status.terminal

    return check


def recorded(
    store: SagaStore, saga_id: str, step: str, kind: str
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(
            h.step == step and h.kind == kind and h.outcome != "started"
            for h in await store.history(saga_id)
        )

    return check


def cli(procs: Procs, *args: str) -> str:
    """Run ``sagakit ARGS --sagas TARGET --as ops`` to its end; its output."""
    return procs.finish(
        procs.start(*args, "--sagas", TARGET, "--as", "ops", module=True)
    )


async def paused_by_the_cli(
    procs: Procs, store: SagaStore, saga: str, gated: str, kind: str
) -> tuple[str, int]:
    """Submit ``saga``, let a worker run it to the ``gated`` step (or
    compensation), pause it from another process, then let that step end.
    Returns the saga's id and the worker's pid."""
    client = SagaClient(store, [pause_app.forward, pause_app.rollback])
    saga_id = await client.submit(
        pause_app.forward if saga == "forward" else pause_app.rollback
    )
    worker = procs.start("worker", TARGET, module=True)
    await eventually(f"{gated} to begin", began(procs, saga, gated))
    said = cli(procs, "pause", saga_id, "--reason", "deploy")
    assert f"pause committed for {saga}" in said
    record = await store.get(saga_id)
    assert record.state.paused
    lease = (await store.leases([saga_id]))[saga_id]
    assert lease.owner is not None
    assert lease.owner.split(":")[1] == str(worker.pid)  # not taken over
    gate(procs.effects, gated).touch()
    step = gated.removeprefix("undo-")
    await eventually(f"{gated} to be recorded", recorded(store, saga_id, step, kind))
    await asyncio.sleep(QUIET)
    return saga_id, worker.pid


def once_each(procs: Procs, saga: str, steps: list[str], pid: int) -> None:
    """Each of ``steps`` began and ended once, in process ``pid``; no other
    step of ``saga`` ran."""
    found = {
        step: lines
        for (name, step), lines in runs(procs.effects).items()
        if name == saga
    }
    for step in steps:
        assert found.get(step) == [("begin", pid), ("end", pid)], (step, found)


async def finish(procs: Procs) -> None:
    worker = procs.procs[0]
    worker.send_signal(signal.SIGTERM)
    log = procs.finish(worker, seconds=20)
    assert "taken over" not in log


async def test_a_cli_pause_records_the_step_in_flight_and_holds_the_next(
    procs: Procs, store: SagaStore
) -> None:
    saga_id, pid = await paused_by_the_cli(procs, store, "forward", "two", "action")
    assert ("forward", "three") not in runs(procs.effects)
    record = await store.get(saga_id)
    assert record.state.held == ("three",)
    assert record.state.step("two").result == "two"

    assert "unpause committed for forward" in cli(
        procs, "unpause", saga_id, "--reason", "deployed"
    )
    await eventually("the saga to end", ended(store, saga_id))
    assert (await store.get(saga_id)).status is SagaStatus.SUCCEEDED
    once_each(procs, "forward", ["one", "two", "three"], pid)
    history = await store.history(saga_id)
    assert [(h.step, h.outcome) for h in history if h.kind == "action"] == [
        ("one", "succeeded"),
        ("two", "succeeded"),
        ("three", "succeeded"),
    ]
    said = [h.outcome for h in history if h.outcome.endswith("pause_requested")]
    assert said == ["pause_requested", "unpause_requested"]
    await finish(procs)


async def test_a_cli_pause_records_the_compensation_in_flight(
    procs: Procs, store: SagaStore
) -> None:
    saga_id, pid = await paused_by_the_cli(
        procs, store, "rollback", "undo-two", "compensation"
    )
    assert ("rollback", "undo-one") not in runs(procs.effects)
    record = await store.get(saga_id)
    assert record.status is SagaStatus.COMPENSATING
    assert record.state.held == ("one",)

    cli(procs, "unpause", saga_id, "--reason", "deployed")
    await eventually("the saga to end", ended(store, saga_id))
    assert (await store.get(saga_id)).status is SagaStatus.COMPENSATED
    once_each(procs, "rollback", ["one", "two", "undo-two", "undo-one"], pid)
    history = await store.history(saga_id)
    assert [(h.step, h.outcome) for h in history if h.kind == "compensation"] == [
        ("two", "succeeded"),
        ("one", "succeeded"),
    ]
    await finish(procs)
