"""``sagakit.admin``'s actions on one compensation and forks, on SQLite and
PostgreSQL: next to a live worker (refused until the saga is paused, then
picked up by that worker), and a fork that owns the effects it keeps."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import Orchestrator, RetryPolicy, Saga, SagaStatus, Step, StepStatus, admin
from sagakit.errors import StateError
from sagakit.ports.store import SagaStore
from sagakit.runtime import Worker
from tests.integration.test_admin import store

__all__ = ["store"]  # the fixture: a store of each dialect

ONCE = RetryPolicy(attempts=1)
SAID = {"by": "alice", "reason": "fixed"}


async def until(store: SagaStore, saga_id: str, check: Any) -> None:
    async with asyncio.timeout(20):
        while not check(await store.get(saga_id)):  # noqa: ASYNC110 - a worker moves it
            await asyncio.sleep(0.05)


async def test_a_live_worker_keeps_the_saga_until_it_is_paused(
    store: SagaStore,
) -> None:
    """Under ``continue``, b's undo failed for good while a's runs in the
    worker: retrying b is refused until the saga is paused; then the retry
    is held, and the worker runs it once unpaused."""
    log: list[str] = []
    started, gate = asyncio.Event(), asyncio.Event()
    fixed = {"b": False}

    async def undo_a(ctx: object) -> None:
        log.append("undo a")
        started.set()
        await gate.wait()

    def undo_b(ctx: object) -> None:
        log.append("undo b")
        if not fixed["b"]:
            raise OSError("b down")

    def refuse(ctx: object) -> None:
        raise ValueError("declined")

    definition: Saga[Any] = Saga(
        "rollback",
        [
            Step("a", lambda ctx: "a", compensate=undo_a),
            Step("b", lambda ctx: "b", compensate=undo_b, compensation_retry=ONCE),
            Step("c", refuse),
        ],
        on_compensation_failure="continue",
    )
    worker = Worker(store, [definition], lease=0.6, poll_interval=0.05)
    running = asyncio.create_task(worker.run())
    try:
        saga_id = await Orchestrator(store, [definition]).submit(definition)
        await asyncio.wait_for(started.wait(), 10)
        assert await admin.driver_of(store, saga_id) is not None
        with pytest.raises(StateError, match="pause it first"):
            await admin.retry_compensation(store, [definition], saga_id, "b", **SAID)
        await admin.pause(store, [definition], saga_id, by="alice", reason="look")
        record = await admin.retry_compensation(
            store, [definition], saga_id, "b", **SAID
        )
        assert record.state.held == ("b",)  # nothing runs while paused
        fixed["b"] = True
        gate.set()  # a's undo ends in the worker, which keeps the saga
        await until(
            store, saga_id, lambda r: r.state.step("a").status.value == "compensated"
        )
        assert log == ["undo b", "undo a"]
        await admin.unpause(store, [definition], saga_id, by="alice", reason="go")
        await until(store, saga_id, lambda r: r.status is SagaStatus.COMPENSATED)
    finally:
        gate.set()
        worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, 30)
    assert log == ["undo b", "undo a", "undo b"]
    history = await store.history(saga_id)
    assert [
        h.outcome for h in history if h.kind == "saga" and "by" in (h.result or {})
    ] == [
        "pause_requested",
        "retry_compensation_requested",
        "unpause_requested",
    ]


class Seats(BaseModel):
    seat: str = "1A"


async def test_a_fork_owns_the_effects_it_keeps(store: SagaStore) -> None:
    """A fork of a succeeded saga from its last step that then fails
    compensates the steps it kept, and the source takes no other action."""
    log: list[str] = []

    def book(ctx: Seats) -> str:
        log.append(f"book {ctx.seat}")
        return ctx.seat

    def notify(ctx: Seats) -> None:
        log.append(f"notify {ctx.seat}")
        if ctx.seat == "9Z":
            raise OSError("no such seat")

    definition: Saga[Seats] = Saga(
        "seats",
        [
            Step("book", book, compensate=lambda ctx: log.append("unbook")),
            Step("notify", notify, retry=ONCE),
        ],
        context=Seats,
    )
    orch = Orchestrator(store, [definition])
    done = await orch.run(definition, Seats(), saga_id="s-1")
    assert done.status is SagaStatus.SUCCEEDED
    with pytest.raises(StateError, match="does not fit Seats: seat"):
        await admin.fork(
            store, [definition], "s-1", "notify", context={"seat": 3}, **SAID
        )

    forked = await admin.fork(
        store, [definition], "s-1", "notify", context={"seat": "9Z"}, **SAID
    )
    await orch.recover()
    final = await asyncio.wait_for(orch.wait(forked.saga_id), 10)
    assert final.status is SagaStatus.COMPENSATED
    assert log == ["book 1A", "notify 1A", "notify 9Z", "unbook"]
    record = await store.get(forked.saga_id)
    assert record.state.step("book").status is StepStatus.COMPENSATED
    with pytest.raises(StateError, match=f"forked into {forked.saga_id} already"):
        await admin.fork(store, [definition], "s-1", "book", **SAID)
    await orch.close()
