"""``sagakit.admin``: listing, showing, operator actions handed over to workers,
bulk retry and dead-letter replay, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sagakit import (
    Orchestrator,
    RetryPolicy,
    Saga,
    SagaStatus,
    SQLiteStore,
    Step,
    admin,
)
from sagakit.adapters.store import open_store_async
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.errors import SagaError, SagaNotFound, StateError
from sagakit.messaging.envelope import Envelope
from sagakit.ports.store import SagaStore
from sagakit.runtime import Worker
from sagakit.testing import FakeClock


class Switch:
    """Steps that fail while ``broken``; every call is logged."""

    def __init__(self) -> None:
        self.broken = True
        self.log: list[str] = []

    def step(self, name: str, *, breaks: bool = False) -> Any:
        def action(ctx: object) -> str:
            self.log.append(name)
            if breaks and self.broken:
                raise OSError(f"{name} down")
            return name

        return action

    def undo(self, name: str, *, breaks: bool = False) -> Any:
        def compensate(ctx: object) -> None:
            self.log.append(f"undo {name}")
            if breaks and self.broken:
                raise OSError(f"undo {name} down")

        return compensate


def shipping(switch: Switch) -> Saga[Any]:
    """Fails after its pivot while broken: ``failed``."""
    return Saga(
        "shipping",
        [
            Step("reserve", switch.step("reserve"), compensate=switch.undo("reserve")),
            Step("charge", switch.step("charge"), pivot=True),
            Step("ship", switch.step("ship", breaks=True)),
        ],
    )


def undoing(switch: Switch) -> Saga[Any]:
    """Rolls back, and its undo fails while broken: ``compensation_failed``."""

    def refuse(ctx: object) -> None:
        raise ValueError("card declined")

    return Saga(
        "undoing",
        [
            Step(
                "reserve",
                switch.step("reserve"),
                compensate=switch.undo("reserve", breaks=True),
                compensation_retry=RetryPolicy(attempts=1),
            ),
            Step("charge", refuse),
        ],
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SagaStore]:
    if request.param == "sqlite":
        url = str(tmp_path / "admin.db")
    else:
        url = request.getfixturevalue("pg_url")
    opened = await open_store_async(url)
    yield opened
    await opened.close()


async def finish(store: SagaStore, sagas: list[Saga[Any]]) -> list[str]:
    """What ``sagakit recover`` does: resume every unfinished saga, wait."""
    orch = Orchestrator(store, sagas)
    resumed = await orch.recover()
    await asyncio.wait_for(orch.drain(), 10)
    return resumed


# -- listing and showing -----------------------------------------------------


async def test_list_filters_by_age_status_and_name(store: SagaStore) -> None:
    switch = Switch()
    definitions = [shipping(switch), undoing(switch)]
    clock = FakeClock(1_700_000_000.0)
    orch = Orchestrator(store, definitions, clock=clock)
    old = await orch.run(definitions[0])
    clock.advance(3600)
    new = await orch.run(definitions[1])
    clock.advance(60)

    ages = {
        "all": await admin.list_sagas(store, clock=clock),
        "30m": await admin.list_sagas(store, older_than=1800, clock=clock),
        "2h": await admin.list_sagas(store, older_than=7200, clock=clock),
    }
    assert [r.saga_id for r in ages["all"]] == [new.saga_id, old.saga_id]
    assert [r.saga_id for r in ages["30m"]] == [old.saga_id]
    assert ages["2h"] == []
    failed = await admin.list_sagas(store, status=SagaStatus.FAILED, clock=clock)
    assert [r.saga_id for r in failed] == [old.saga_id]
    named = await admin.list_sagas(store, saga="undoing", older_than=30, clock=clock)
    assert [r.saga_id for r in named] == [new.saga_id]
    with pytest.raises(SagaError, match="older_than"):
        await admin.list_sagas(store, older_than=-1)
    with pytest.raises(SagaError, match="limit"):
        await admin.list_sagas(store, limit=0)


async def test_show_has_the_record_and_the_timeline(store: SagaStore) -> None:
    switch = Switch()
    definition = shipping(switch)
    result = await Orchestrator(store, [definition]).run(definition)
    detail = await admin.show(store, result.saga_id[:8])
    assert detail.record.saga_id == result.saga_id
    assert detail.record.status is SagaStatus.FAILED
    actions = {(h.step, h.outcome): h for h in detail.history if h.kind == "action"}
    assert actions["charge", "succeeded"].result == "charge"
    error = actions["ship", "failed"].error
    assert error is not None
    assert error.message == "ship down"
    with pytest.raises(SagaNotFound):
        await admin.show(store, "f" * 32)
    with pytest.raises(SagaNotFound, match="at least 6"):
        await admin.show(store, "abc")


# -- operator actions ----------------------------------------------------------


async def test_retry_is_committed_then_finished_by_recover(store: SagaStore) -> None:
    switch = Switch()
    definition = shipping(switch)
    result = await Orchestrator(store, [definition]).run(definition)
    switch.broken = False

    record = await admin.retry(
        store, [definition], result.saga_id, by="alice", reason="carrier is back"
    )
    assert record.status is SagaStatus.RUNNING
    assert switch.log == ["reserve", "charge", "ship"]  # not run by the admin call
    assert await finish(store, [definition]) == [result.saga_id]
    assert (await store.get(result.saga_id)).status is SagaStatus.SUCCEEDED
    assert switch.log == ["reserve", "charge", "ship", "ship"]
    history = await store.history(result.saga_id)
    notes = [h.result for h in history if h.outcome == "retry_requested"]
    assert notes == [
        {
            "by": "alice",
            "reason": "carrier is back",
            "changed": ["status failed -> running", "step ship failed -> running"],
        }
    ]


async def test_resume_finishes_a_failed_rollback(store: SagaStore) -> None:
    switch = Switch()
    definition = undoing(switch)
    result = await Orchestrator(store, [definition]).run(definition)
    assert result.status is SagaStatus.COMPENSATION_FAILED
    switch.broken = False
    record = await admin.resume(
        store, [definition], result.saga_id, by="bob", reason="fixed the undo"
    )
    assert record.status is SagaStatus.COMPENSATING
    await finish(store, [definition])
    assert (await store.get(result.saga_id)).status is SagaStatus.COMPENSATED
    assert switch.log.count("undo reserve") == 2


async def test_refusals_change_nothing(store: SagaStore) -> None:
    switch = Switch()
    definition = shipping(switch)
    switch.broken = False
    ok = await Orchestrator(store, [definition]).run(definition)
    before = await store.get(ok.saga_id)
    for action in (admin.retry, admin.resume, admin.cancel):
        with pytest.raises(StateError, match="succeeded"):
            await action(store, [definition], ok.saga_id, by="eve", reason="try")
    for by, reason in (("", "why"), ("eve", " "), ("eve", "")):
        with pytest.raises(SagaError, match="needs"):
            await admin.retry(store, [definition], ok.saga_id, by=by, reason=reason)
    assert (await store.get(ok.saga_id)).version == before.version
    with pytest.raises(SagaNotFound):
        await admin.retry(store, [definition], "0" * 32, by="eve", reason="try")


async def test_cancel_of_a_saga_a_worker_drives_is_compensated_by_a_worker(
    store: SagaStore,
) -> None:
    started, gate = asyncio.Event(), asyncio.Event()
    log: list[str] = []

    async def slow(ctx: object) -> str:
        log.append("slow")
        started.set()
        await gate.wait()
        return "slow"

    definition: Saga[Any] = Saga(
        "held",
        [
            Step(
                "first",
                lambda ctx: log.append("first"),
                compensate=lambda ctx: log.append("undo first"),
            ),
            # the worker keeps the saga: the step's outcome is recorded, and it
            # is compensated because it succeeded
            Step(
                "slow",
                slow,
                compensate=lambda ctx: log.append("undo slow"),
                compensate_on_failure=True,
            ),
            Step("never", lambda ctx: log.append("never")),
        ],
    )
    worker = Worker(store, [definition], lease=0.6, poll_interval=0.05)
    running = asyncio.create_task(worker.run())
    try:
        saga_id = await Orchestrator(store, [definition]).submit(definition)
        await asyncio.wait_for(started.wait(), 10)
        record = await admin.cancel(
            store, [definition], saga_id, by="carol", reason="customer asked"
        )
        assert record.status is SagaStatus.COMPENSATING
        gate.set()  # the step in flight ends; its owner records it, then undoes it
        async with asyncio.timeout(20):
            while (await store.get(saga_id)).status is not SagaStatus.COMPENSATED:  # noqa: ASYNC110 - another owner finishes it
                await asyncio.sleep(0.05)
    finally:
        gate.set()
        worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, 30)
    final = await store.get(saga_id)
    assert final.state.error is not None
    assert final.state.error.message == "customer asked"
    assert "never" not in log
    assert log == ["first", "slow", "undo slow", "undo first"]
    history = await store.history(saga_id)
    assert [h.outcome for h in history if h.step == "slow" and h.kind == "action"] == [
        "succeeded"
    ]
    (line,) = [h.result for h in history if h.outcome == "cancel_requested"]
    assert line["by"] == "carol"
    assert line["reason"] == "customer asked"


async def test_cancel_past_the_pivot_is_refused(store: SagaStore) -> None:
    started, gate = asyncio.Event(), asyncio.Event()

    async def ship(ctx: object) -> str:
        started.set()
        await gate.wait()
        return "shipped"

    definition: Saga[Any] = Saga(
        "paid", [Step("charge", lambda ctx: 1, pivot=True), Step("ship", ship)]
    )
    orch = Orchestrator(store, [definition])
    saga_id = await orch.start(definition)
    await asyncio.wait_for(started.wait(), 5)
    before = await store.get(saga_id)
    with pytest.raises(StateError, match="past its pivot"):
        await admin.cancel(store, [definition], saga_id, by="eve", reason="no")
    assert (await store.get(saga_id)).version == before.version
    gate.set()
    final = await asyncio.wait_for(orch.wait(saga_id), 5)
    assert final.status is SagaStatus.SUCCEEDED


# -- bulk retry --------------------------------------------------------------------


async def test_retry_failed_retries_the_newest_first_within_the_limit(
    store: SagaStore,
) -> None:
    switch = Switch()
    definitions = [shipping(switch), undoing(switch)]
    clock = FakeClock()
    orch = Orchestrator(store, definitions, clock=clock)
    failed = []
    for _ in range(3):
        failed.append((await orch.run(definitions[0])).saga_id)
        clock.advance(1)
    stuck = (await orch.run(definitions[1])).saga_id  # compensation_failed: skipped
    switch.broken = False

    seen: list[tuple[int, int]] = []
    first = await admin.retry_failed(
        store,
        definitions,
        limit=2,
        by="dave",
        reason="carrier is back",
        progress=lambda d, t: seen.append((d, t)),
    )
    assert first.retried == [failed[2], failed[1]]
    assert first.refused == {}
    assert seen == [(1, 2), (2, 2)]
    await finish(store, definitions)
    statuses = [(await store.get(i)).status for i in failed]
    assert statuses == [SagaStatus.FAILED] + [SagaStatus.SUCCEEDED] * 2
    assert (await store.get(stuck)).status is SagaStatus.COMPENSATION_FAILED

    said = {"by": "dave", "reason": "carrier is back"}
    second = await admin.retry_failed(store, definitions, saga="shipping", **said)
    assert second.retried == failed[:1]
    assert (await admin.retry_failed(store, definitions, **said)).retried == []
    with pytest.raises(SagaError, match="no definition of saga 'nope'"):
        await admin.retry_failed(store, definitions, saga="nope", **said)


# -- dead letters --------------------------------------------------------------------


async def test_dead_letters_are_described_and_replayed() -> None:
    transport = InProcessTransport()
    broken = {"now": True}
    handled: list[str] = []
    done = asyncio.Event()

    async def handler(message: Envelope) -> None:
        if broken["now"]:
            raise RuntimeError("kitchen down")
        handled.append(message.id)
        if len(handled) == 3:
            done.set()

    sent = [
        Envelope(
            kind="command",
            type="kitchen.cook",
            correlation_id=f"s{n}:cook:1",
            saga_id=f"s{n}",
        )
        for n in range(3)
    ]
    try:
        await transport.consume("kitchen", handler, max_deliveries=1)
        for message in sent:
            await transport.publish("kitchen", message)
        await transport.publish_raw("kitchen", b"not json")
        async with asyncio.timeout(5):
            while len(await transport.dead_letters("kitchen")) < 4:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        infos = await admin.dead_letters(transport, "kitchen")
        assert [(i.message_type, i.saga_id) for i in infos[:3]] == [
            ("kitchen.cook", f"s{n}") for n in range(3)
        ]
        assert infos[3].message_type is None
        assert "kitchen down" in infos[0].letter.reason

        broken["now"] = False
        seen: list[tuple[int, int]] = []
        moved = await admin.replay_dead_letters(
            transport, "kitchen", limit=3, progress=lambda d, t: seen.append((d, t))
        )
        assert moved == 3
        assert seen[-1] == (3, 3)
        await asyncio.wait_for(done.wait(), 5)
        assert sorted(handled) == sorted(m.id for m in sent)
        left = await admin.dead_letters(transport, "kitchen")
        assert [i.letter.body for i in left] == [b"not json"]
    finally:
        await transport.close()


async def test_admin_needs_no_store_of_its_own(tmp_path: Path) -> None:
    """The functions take the store they are given and leave it open."""
    store = SQLiteStore(tmp_path / "s.db")
    assert await admin.list_sagas(store) == []
    assert (
        await admin.retry_failed(store, [shipping(Switch())], by="x", reason="y")
        == admin.BulkRetry()
    )
    await store.close()


def test_migrate_reports_each_migration(tmp_path: Path) -> None:
    """What ``sagakit db migrate`` advances its progress bar on."""
    from sagakit.adapters.store.sql import Migration, migrations  # noqa: PLC0415

    store = SQLiteStore(tmp_path / "m.db", migrate=False)
    seen: list[Migration] = []
    applied = store.migrate(progress=seen.append)
    assert applied == [m.version for m in migrations("sqlite")]
    assert seen == list(migrations("sqlite"))
    assert store.migrate(progress=seen.append) == []
    assert len(seen) == len(applied)
    run_close(store)


def run_close(store: SQLiteStore) -> None:
    asyncio.run(store.close())
