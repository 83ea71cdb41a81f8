"""A step that calls another step due now: the call is committed already
claimed and the same worker runs it, without a claim's commit (SQLite,
PostgreSQL and MySQL). The history is the same as without chaining; a
worker that stops, or dies, leaves the call to others as a claim would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sagakit.adapters.store import Database
from sagakit.ports.workflow_store import WorkflowRecord, WorkflowStatus, WorkflowStore
from sagakit.testing import FakeClock
from sagakit.workflow import WorkflowApp
from sagakit.workflow.runner import CHAIN_STEPS

SETTLE = 30.0  # seconds a test waits for what it needs before failing


@pytest.fixture
def store(sql_database: Database) -> WorkflowStore:
    assert sql_database.workflows is not None
    return sql_database.workflows


class Claims:
    """A store that counts its claims (a commit each)."""

    def __init__(self, store: WorkflowStore) -> None:
        self.store = store
        self.claims = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        self.claims += 1
        return await self.store.claim(*args, **kwargs)


def three_steps(
    store: WorkflowStore | Claims,
    seen: list[WorkflowRecord],
    hang_in_two: asyncio.Event | None = None,
    **options: Any,
) -> WorkflowApp:
    """one -> two -> three, each noting the instance as stored while it runs
    (``two`` then sets ``hang_in_two`` and never ends, if given); ``three``
    returns the input doubled."""
    app = WorkflowApp("chain", store, **options)  # type: ignore[arg-type]

    async def look(instance_id: str) -> None:
        seen.append(await app.get(instance_id))

    @app.step
    async def one(x: int, state: Any, set_state: Any, logger: Any) -> Any:
        await look(logger.extra["instance_id"])
        return two(x)

    @app.step
    async def two(x: int, state: Any, set_state: Any, logger: Any) -> Any:
        await look(logger.extra["instance_id"])
        if hang_in_two is not None:
            hang_in_two.set()
            await asyncio.Event().wait()
        return three(x)

    @app.step
    async def three(x: int, state: Any, set_state: Any, logger: Any) -> Any:
        await look(logger.extra["instance_id"])
        return 2 * x

    return app


@pytest.mark.parametrize("chain", [True, False])
async def test_calls_due_now_run_in_place_with_the_same_history(
    store: WorkflowStore, chain: bool
) -> None:
    counted, seen = Claims(store), []
    app = three_steps(counted, seen, chain=chain)
    iid = await app.start("c-1", "one", 21)
    assert await app.run_until_idle() == 3
    assert await app.result(iid) == 42
    # the first claim, then one a step without chaining, and the empty last look
    assert counted.claims == (2 if chain else 4)
    history = await app.history(iid)
    assert [(h.step, h.outcome, h.attempt) for h in history] == [
        ("one", "started", 0),
        ("one", "succeeded", 1),
        ("two", "succeeded", 1),
        ("three", "succeeded", 1),
    ]
    # each step ran claimed by this worker, as a first attempt
    assert [(r.step, r.status, r.owner, r.attempts) for r in seen] == [
        (name, WorkflowStatus.RUNNING, app.worker_id, 1)
        for name in ("one", "two", "three")
    ]
    versions = [r.version for r in seen]
    assert versions == sorted(set(versions))  # a new version each step


async def test_a_delayed_call_or_an_awaited_event_is_left_pending(
    store: WorkflowStore,
) -> None:
    clock = FakeClock()
    app = WorkflowApp("chain", store, clock=clock)

    @app.step
    async def first(x: str) -> Any:
        return later(x, delay=60) if x == "timer" else event.wait(x)

    @app.step
    async def later(x: str) -> None:
        return None

    @app.step
    async def event(x: str) -> None:
        return None

    timer = await app.start("t", "first", "timer")
    waits = await app.start("e", "first", "event")
    assert await app.run_until_idle() == 2
    for iid, step in ((timer, "later"), (waits, "event")):
        record = await app.get(iid)
        assert (record.status, record.step, record.owner) == (
            WorkflowStatus.PENDING,
            step,
            None,
        )
    clock.advance(61)
    assert await app.run_until_idle() == 1
    assert (await app.get(timer)).status is WorkflowStatus.SUCCEEDED


async def test_a_stopping_worker_leaves_the_next_call_to_others(
    store: WorkflowStore,
) -> None:
    stop = asyncio.Event()
    app = WorkflowApp("chain", store)

    @app.step
    async def first(x: int) -> Any:
        stop.set()  # the worker is asked to stop while this step runs
        return second(x)

    @app.step
    async def second(x: int) -> int:
        return x

    iid = await app.start("s", "first", 1)
    await asyncio.wait_for(app.run(stop, poll_interval=0.01), SETTLE)
    record = await app.get(iid)
    assert (record.status, record.step, record.owner) == (
        WorkflowStatus.PENDING,
        "second",
        None,
    )
    assert await app.run_until_idle() == 1
    assert await app.result(iid) == 1


async def test_a_worker_lost_between_chained_steps_leaves_them_to_another(
    store: WorkflowStore,
) -> None:
    """The first worker dies in ``two`` (its task cancelled, as a killed
    process stops): ``two`` is claimable once its lease runs out, and
    another worker runs it and ``three``."""
    clock, seen, in_two = FakeClock(), [], asyncio.Event()
    lost = three_steps(store, seen, in_two, clock=clock, lease=5.0, worker_id="lost")
    iid = await lost.start("l", "one", 5)
    worker = asyncio.create_task(lost.run_until_idle())
    await asyncio.wait_for(in_two.wait(), SETTLE)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    held = await lost.get(iid)
    assert (held.status, held.step, held.owner) == (
        WorkflowStatus.RUNNING,
        "two",
        "lost",
    )
    other = three_steps(store, seen, clock=clock, lease=5.0, worker_id="other")
    assert await other.run_until_idle() == 0  # still leased
    clock.advance(6)
    assert await other.run_until_idle() == 2
    assert await other.result(iid) == 10
    history = await other.history(iid)
    assert [(h.step, h.outcome, h.attempt) for h in history] == [
        ("one", "started", 0),
        ("one", "succeeded", 1),
        ("two", "succeeded", 2),  # its second start
        ("three", "succeeded", 1),
    ]


async def test_a_long_chain_gives_its_slot_back_every_chain_steps_steps(
    store: WorkflowStore,
) -> None:
    app = WorkflowApp("chain", store)

    @app.step
    async def count(n: int) -> Any:
        return count(n - 1) if n > 1 else "done"

    iid = await app.start("long", "count", 2 * CHAIN_STEPS + 50)
    runs = [await app.run_once() for _ in range(4)]
    assert runs == [CHAIN_STEPS, CHAIN_STEPS, 50, 0]
    assert await app.result(iid) == "done"
