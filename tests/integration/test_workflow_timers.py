"""The workflow worker loop sleeps until the next instance is due, wakes for
its own app's starts and events, claims again as soon as a slot frees, and
two workers never run one instance twice (SQLite and PostgreSQL).

Every worker here polls once an hour (``poll_interval=3600``): an instance
that runs did so because the loop woke for it, not because it polled.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.ports.workflow_store import WorkflowRecord, WorkflowStatus, WorkflowStore
from sagakit.workflow import WorkflowApp
from tests.conftest import BACKENDS, Stores, workflow_store_at

HOUR = 3600.0
SETTLE = 60.0  # seconds a test waits for the instances it needs before failing

Opener = Callable[[], Awaitable[WorkflowStore]]


async def _on_server(url: str) -> WorkflowStore:
    return await workflow_store_at(url, max_size=4)


@pytest.fixture(params=BACKENDS)
async def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Opener]:
    """Opens handles on one database, as separate processes would."""
    path = tmp_path / "timers.db"
    stores: Stores[WorkflowStore] = Stores(
        request, lambda: SQLiteWorkflowStore(path), _on_server
    )
    yield stores
    await stores.close()


@pytest.fixture
async def store(open_store: Opener) -> WorkflowStore:
    return await open_store()


def build(store: WorkflowStore, ran: list[str], **options: Any) -> WorkflowApp:
    """``tick`` records its instance id and ends it (or calls ``tock``
    after ``{"then": delay}``, or waits for ``tock`` if the delay is None)."""
    app = WorkflowApp("timers", store, **options)

    @app.step
    async def tick(input: Any, state: Any, set_state: Any, logger: Any) -> Any:
        ran.append(logger.extra["instance_id"])
        if isinstance(input, dict) and "then" in input:
            delay = input["then"]
            return tock.wait() if delay is None else tock(delay=delay)
        return None

    @app.step
    async def tock(input: Any, state: Any, set_state: Any, logger: Any) -> None:
        ran.append(f"{logger.extra['instance_id']}/tock")

    return app


@asynccontextmanager
async def running(app: WorkflowApp) -> AsyncIterator[None]:
    stop = asyncio.Event()
    loop = asyncio.create_task(app.run(stop, poll_interval=HOUR))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(loop, SETTLE)


def succeeded(record: WorkflowRecord) -> bool:
    return record.status is WorkflowStatus.SUCCEEDED


async def finished(
    app: WorkflowApp,
    ids: Iterable[str],
    done: Callable[[WorkflowRecord], bool] = succeeded,
) -> None:
    """Wait until every instance of ``ids`` is ``done`` (succeeded)."""
    pending = set(ids)
    async with asyncio.timeout(SETTLE):
        while pending:
            for instance_id in list(pending):
                if done(await app.get(instance_id)):
                    pending.discard(instance_id)
            await asyncio.sleep(0.01)


async def test_a_sleeping_worker_wakes_when_a_timer_is_due(
    open_store: Opener,
) -> None:
    ran: list[str] = []
    other = build(await open_store(), ran)  # another process's app
    await other.start("later", "tick", delay=0.3)
    worker = build(await open_store(), ran)
    async with running(worker):
        await finished(worker, ["later"])
    assert ran == ["later"]


async def test_its_own_starts_and_events_wake_the_worker(store: WorkflowStore) -> None:
    ran: list[str] = []
    app = build(store, ran)
    async with running(app):
        await asyncio.sleep(0.05)  # let it go to sleep: nothing is due
        await app.start("now", "tick")
        await finished(app, ["now"])
        await app.start("event", "tick", {"then": None})
        await finished(app, ["event"], lambda record: record.step == "tock")
        await app.call("event", "tock")
        await finished(app, ["event"])
    assert ran == ["now", "event", "event/tock"]


async def test_a_next_call_due_soon_wakes_the_worker(store: WorkflowStore) -> None:
    ran: list[str] = []
    app = build(store, ran)
    async with running(app):
        await app.start("chain", "tick", {"then": 0.2})
        await finished(app, ["chain"])
    assert ran == ["chain", "chain/tock"]


async def test_a_full_worker_claims_again_as_soon_as_a_slot_frees(
    open_store: Opener,
) -> None:
    ran: list[str] = []
    other = build(await open_store(), ran)
    ids = [f"i{n}" for n in range(7)]
    for instance_id in ids:
        await other.start(instance_id, "tick")
    worker = build(await open_store(), ran, max_active=2, batch=2)
    async with running(worker):
        await finished(worker, ids)
    assert sorted(ran) == ids


async def test_two_workers_never_run_an_instance_twice(open_store: Opener) -> None:
    ran: list[str] = []
    starter = build(await open_store(), ran)
    ids = [f"i{n:03}" for n in range(150)]
    for instance_id in ids:
        await starter.start(instance_id, "tick", delay=0.2)
    options = {"max_active": 10, "batch": 7}
    one = build(await open_store(), ran, worker_id="one", **options)
    two = build(await open_store(), ran, worker_id="two", **options)
    async with running(one), running(two):
        await finished(one, ids)
    assert collections.Counter(ran) == dict.fromkeys(ids, 1)


class Counted:
    """A store that counts claims and next_due calls, and says when it has
    been asked for the next due time ``enough`` times."""

    def __init__(self, store: WorkflowStore, enough: int) -> None:
        self.store, self.enough = store, enough
        self.claims = self.looks = 0
        self.asked = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        self.claims += 1
        return await self.store.claim(*args, **kwargs)

    async def next_due(self, *args: Any, **kwargs: Any) -> Any:
        self.looks += 1
        if self.looks >= self.enough:
            self.asked.set()
        return await self.store.next_due(*args, **kwargs)


async def test_an_idle_worker_only_reads(store: WorkflowStore) -> None:
    await build(store, []).start("asleep", "tick", delay=HOUR)
    counted = Counted(store, enough=5)
    app = build(counted, [])  # type: ignore[arg-type]  # a store by duck typing
    stop = asyncio.Event()
    loop = asyncio.create_task(app.run(stop, poll_interval=0.01))
    await asyncio.wait_for(counted.asked.wait(), SETTLE)
    stop.set()
    await asyncio.wait_for(loop, SETTLE)
    assert counted.claims == 1  # its first look; then next_due said "not yet"
    assert counted.looks >= 5


async def test_results_ready_together_are_committed_together(
    store: WorkflowStore,
) -> None:
    ran: list[str] = []
    app = build(store, ran, max_active=40, batch=40)
    ids = [f"i{n:02}" for n in range(40)]
    for instance_id in ids:
        await app.start(instance_id, "tick")
    assert await app.run_until_idle() == 40
    assert sorted(ran) == ids
    assert app.saves.saves == 40
    assert app.saves.batches < 40  # one commit held several step results
    for instance_id in ids:
        assert (await app.get(instance_id)).status is WorkflowStatus.SUCCEEDED


async def test_results_a_few_turns_apart_share_a_commit(store: WorkflowStore) -> None:
    """Steps that finish over several turns of the loop (each awaits a few
    times): on a store whose writes block the loop, the batch waits while
    turns bring more results, so one commit holds all 40; elsewhere they
    queue while a commit is in flight."""
    app = WorkflowApp("spread", store, max_active=40, batch=40)

    @app.step
    async def tick(input: int, state: Any, set_state: Any, logger: Any) -> None:
        for _ in range(input % 4):
            await asyncio.sleep(0)

    for n in range(40):
        await app.start(f"s{n:02}", "tick", n)
    assert await app.run_until_idle() == 40
    assert app.saves.saves == 40
    if isinstance(store, SQLiteWorkflowStore):  # its writes block the loop
        assert app.saves.batches == 1
    else:
        assert app.saves.batches < 40


class WhoSaves:
    """A store that records which coroutine each save ran in."""

    def __init__(self, store: WorkflowStore) -> None:
        self.store = store
        self.savers: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def _saver(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.savers.append(task.get_coro().__qualname__)  # type: ignore[union-attr]

    async def save(self, *args: Any, **kwargs: Any) -> Any:
        self._saver()
        return await self.store.save(*args, **kwargs)

    async def save_many(self, *args: Any, **kwargs: Any) -> Any:
        self._saver()
        return await self.store.save_many(*args, **kwargs)  # type: ignore[attr-defined]


async def test_a_lone_result_is_saved_by_its_own_step_not_a_batch(
    store: WorkflowStore,
) -> None:
    """With no other step running and nothing else ready, a step's result
    goes to the store at once, from the task that ran the step: no batch
    task, no turn of the loop waited."""
    who = WhoSaves(store)
    app = build(who, [])  # type: ignore[arg-type]  # a store by duck typing
    for n in range(3):
        await app.start(f"lone{n}", "tick")
        assert await app.run_until_idle() == 1
    assert who.savers == ["run_claimed"] * 3
    assert app.saves.batches == 3
    two = build(who, [], max_active=2, batch=2)
    await two.start("pair0", "tick")
    await two.start("pair1", "tick")
    assert await two.run_until_idle() == 2
    assert who.savers[3:] == ["Batcher._flush"]  # the pair: one batch
