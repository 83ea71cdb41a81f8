"""Hooks against a real HTTP receiver (Starlette on uvicorn, an ephemeral
port): the signature verifies, a 500 is retried, nothing is sent twice; on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from sagakit import Orchestrator, RetryPolicy, Saga, SagaStatus, SQLiteStore, Step
from sagakit.adapters.store import notification_store_for
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.hooks import HookEvent, HookRetry, Hooks, Notifier, verify_signature
from sagakit.hooks.event import stuck_reason
from sagakit.ports.notification_store import LockWait, NotificationStatus, Unattended
from sagakit.ports.store import SagaStore
from sagakit.runtime.worker import Worker
from sagakit.testing import FakeClock
from sagakit.testing.contracts.store_locks import _sagas, _save, queue, take
from tests.conftest import OpenSagaStore
from tests.hook_receiver import Receiver

SECRET = "whsec-test-0123456789abcdef"  # noqa: S105 - a test secret
QUICK = HookRetry(attempts=3, backoff=0.05, max_backoff=0.05)


def ship(ctx: object) -> None:
    raise ConnectionError("carrier API unreachable")


def undo(ctx: object, result: object) -> None:
    raise RuntimeError("refund service down")


shipping: Saga[Any] = Saga(
    "shipping",
    [
        Step("charge", lambda ctx: "C-1", pivot=True),
        Step("ship", ship, retry=RetryPolicy(attempts=1)),
    ],
)
booking: Saga[Any] = Saga(
    "booking",
    [
        Step(
            "hold",
            lambda ctx: "H-1",
            compensate=undo,
            compensation_retry=RetryPolicy(attempts=1),
        ),
        Step("pay", ship, retry=RetryPolicy(attempts=1)),
    ],
)


async def deliver(notifier: Notifier, until: Any) -> None:
    """Run passes of ``notifier`` until ``until()`` holds."""
    async with asyncio.timeout(15):
        while not until():
            await notifier.run_once()
            await asyncio.sleep(0.02)


async def test_a_webhook_is_signed_retried_after_a_500_and_sent_once(
    open_saga_store: OpenSagaStore,
) -> None:
    store = await open_saga_store()
    result = await Orchestrator(store, [shipping]).run(shipping, saga_id="order-17")
    assert result.status is SagaStatus.FAILED  # ended before any notifier ran
    async with Receiver(answers=[500]) as receiver:
        hooks = Hooks(webhook=receiver.url, secret=SECRET, retry=QUICK)
        notifier = Notifier(store, hooks)
        await deliver(notifier, lambda: len(receiver.requests) == 2)
        for _ in range(3):  # later passes, and another process's notifier
            await notifier.run_once()
        await Notifier(await open_saga_store(), hooks).run_once()
    first, second = receiver.requests
    for request in (first, second):
        signed = request.headers["sagakit-signature"]
        assert verify_signature(SECRET, request.body, signed)
        assert not verify_signature("another secret", request.body, signed)
        assert not verify_signature(SECRET, request.body + b" ", signed)
        assert request.headers["content-type"] == "application/json"
        assert request.headers["sagakit-event"] == "saga.failed"
    assert [r.headers["sagakit-delivery-attempt"] for r in receiver.requests] == [
        "1",
        "2",
    ]
    assert first.body == second.body
    body = json.loads(second.body)
    assert body["id"] == second.headers["sagakit-event-id"]
    assert body["id"].startswith("saga.failed:order-17:")
    assert body["type"] == "saga.failed"
    assert body["saga_id"] == "order-17"
    assert body["saga"]["failed_step"] == "ship"
    assert body["saga"]["error"] == "ConnectionError: carrier API unreachable"
    assert body["saga"]["status"] == "failed"
    (note,) = await notification_store_for(store).notifications()
    assert note.status is NotificationStatus.DELIVERED
    assert note.attempts == 2
    assert note.delivered_to == ("webhook",)
    assert notifier.delivered == 1


async def test_a_failed_callback_is_retried_alone() -> None:
    store = InMemoryStore()
    calls: list[HookEvent] = []

    def flaky(event: HookEvent) -> None:
        calls.append(event)
        if len(calls) == 1:
            raise OSError("pager down")

    await Orchestrator(store, [booking]).run(booking, saga_id="b-1")
    async with Receiver() as receiver:
        hooks = Hooks(callback=flaky, webhook=receiver.url, secret=SECRET, retry=QUICK)
        notifier = Notifier(store, hooks)
        await deliver(notifier, lambda: len(calls) == 2)
        await notifier.run_once()
    assert len(receiver.requests) == 1  # the webhook had it the first time
    assert [c.kind.value for c in calls] == ["saga.compensation_failed"] * 2
    assert [c.attempt for c in calls] == [1, 2]
    assert calls[1].saga is not None
    assert calls[1].saga["compensation_errors"] == [
        {"step": "hold", "error": "RuntimeError: refund service down"}
    ]
    (note,) = await store.notification_store().notifications()
    assert note.delivered_to == ("callback", "webhook")


async def test_attempts_run_out_and_the_notification_is_dropped() -> None:
    store = InMemoryStore()
    await Orchestrator(store, [shipping]).run(shipping)
    async with Receiver(answers=[503, 503, 503]) as receiver:
        hooks = Hooks(webhook=receiver.url, secret=SECRET, retry=QUICK)
        notifier = Notifier(store, hooks)
        notes = store.notification_store()
        await deliver(notifier, lambda: notifier.dropped == 1)
        await notifier.run_once()
    assert len(receiver.requests) == 3
    (note,) = await notes.notifications(status=NotificationStatus.DROPPED)
    assert note.attempts == 3
    assert note.last_error is not None
    assert "answered HTTP 503: receiver says no" in note.last_error


async def test_stuck_sagas_are_told_once_per_version() -> None:
    store = InMemoryStore()
    clock = FakeClock(start=1_000.0)
    told: list[HookEvent] = []
    hooks = Hooks(callback=told.append, stuck_after=60, paused_after=600)
    notifier = Notifier(store, hooks, clock=clock, sweep_interval=1e-9)
    orch = Orchestrator(store, [shipping], clock=clock)
    unclaimed = await orch.submit(shipping, saga_id="nobody-runs-me")
    await notifier.run_once()
    assert told == []  # not long enough
    clock.advance(61)
    await notifier.run_once()
    await notifier.run_once()  # found again: nothing new
    (event,) = told
    assert event.kind.value == "saga.stuck"
    assert event.saga_id == unclaimed
    assert event.detail["reason"] == "unclaimed"
    assert "is a worker running?" in event.detail["message"]


async def test_a_saga_parked_as_poison_is_stuck_by_its_own_pause() -> None:
    """Not "an operator paused it": the reason it parked itself, and that
    its locks stay with it."""
    store = InMemoryStore()
    await Orchestrator(store, [shipping]).submit(shipping, saga_id="p")
    submitted = await store.get("p")
    state = submitted.state.but(
        paused=True, parked="poison: step 'ship' was in flight in 3 processes"
    )
    record = dataclasses.replace(submitted, state=state)
    reason, message = stuck_reason(
        Unattended(record=record, owner="w", lease_live=True)
    )
    assert reason == "paused"
    assert message == (
        "it paused itself and keeps its locks: poison: step 'ship' was in flight "
        "in 3 processes; unpause it once its step is sound"
    )
    by_hand = dataclasses.replace(record, state=state.but(parked=None))
    operator = Unattended(record=by_hand, owner="w", lease_live=True)
    assert stuck_reason(operator)[1] == "an operator paused it and nobody unpaused it"


async def test_long_lock_waits_are_told_once() -> None:
    store = InMemoryStore()
    told: list[HookEvent] = []

    class Waits:
        def __init__(self) -> None:
            self.asked: list[float] = []

        async def lock_waits(
            self, *, longer_than: float, limit: int = 100
        ) -> list[LockWait]:
            self.asked.append(longer_than)
            return [
                LockWait(
                    saga_id="o-2",
                    saga_name="order",
                    key="seat:LH400:12A",
                    since=50.0,
                    step="reserve",
                    holder="o-1",
                )
            ]

    waits = Waits()
    hooks = Hooks(callback=told.append, lock_wait_after=30)
    notifier = Notifier(store, hooks, lock_waits=waits, sweep_interval=1e-9)
    await notifier.run_once()
    await notifier.run_once()
    (event,) = told
    assert waits.asked == [30, 30]
    assert event.kind.value == "lock.waiting"
    assert event.saga is None  # no such saga in this store
    assert event.detail["key"] == "seat:LH400:12A"
    assert event.detail["holder"] == "o-1"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_lock_waits_are_read_from_the_stores_own_locks(
    kind: str, tmp_path: Path
) -> None:
    store = InMemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "l.db")
    await _sagas(store, "holder", "waiter")
    await _save(store, "holder", take("seat:12A"))
    await _save(store, "waiter", queue("seat:12A", since=100.0))
    told: list[HookEvent] = []
    hooks = Hooks(callback=told.append, lock_wait_after=30, stuck_after=None)
    clock = FakeClock(start=120.0)
    notifier = Notifier(store, hooks, clock=clock, sweep_interval=1e-9)
    await notifier.run_once()
    assert told == []  # 20 s of waiting: not yet
    clock.advance(15)
    await notifier.run_once()
    await notifier.run_once()  # found again: nothing new
    (event,) = told
    assert event.kind.value == "lock.waiting"
    assert event.saga_id == "waiter"
    assert event.detail["key"] == "seat:12A"
    assert event.detail["holder"] == "holder"
    assert event.detail["step"] == "reserve"
    assert event.detail["waited"] == 35.0
    await store.close()


async def test_an_old_notification_is_dropped_unsent() -> None:
    store = InMemoryStore()
    clock = FakeClock(start=10.0)
    await Orchestrator(store, [shipping], clock=clock).run(shipping)
    told: list[HookEvent] = []
    hooks = Hooks(callback=told.append, max_age=3600)
    notifier = Notifier(store, hooks, clock=FakeClock(start=10.0 + 7200))
    await notifier.run_once()
    assert told == []
    (note,) = await store.notification_store().notifications()
    assert note.status is NotificationStatus.DROPPED
    assert note.last_error is not None
    assert "old when first seen" in note.last_error


async def test_a_worker_with_hooks_tells_at_once(
    open_saga_store: OpenSagaStore,
) -> None:
    store = await open_saga_store()
    told = asyncio.Event()
    events: list[HookEvent] = []

    async def page(event: HookEvent) -> None:
        events.append(event)
        told.set()

    hooks = Hooks(callback=page)
    worker = Worker(store, [shipping], hooks=hooks, poll_interval=0.05)
    # the notifier's own pass interval is 1 s; the worker's observer wakes it
    assert worker.notifier is not None
    worker.notifier.interval = 3600.0
    running = asyncio.create_task(worker.run())
    try:
        saga_id = await Orchestrator(store, [shipping]).submit(shipping)
        async with asyncio.timeout(15):
            await told.wait()
    finally:
        worker.stop()
        await running
    assert [(e.kind.value, e.saga_id) for e in events] == [("saga.failed", saga_id)]


def test_hooks_refuse_what_cannot_work() -> None:
    from sagakit.errors import SagaError  # noqa: PLC0415

    with pytest.raises(SagaError, match="a callback, a webhook URL, or both"):
        Hooks()
    with pytest.raises(SagaError, match="needs a secret"):
        Hooks(webhook="https://ops.example.com/hook")
    with pytest.raises(SagaError, match="http:// or https://"):
        Hooks(webhook="file:///etc/passwd", secret=SECRET)
    with pytest.raises(SagaError, match="unknown hook event"):
        Hooks(callback=print, events=["saga.exploded"])
    with pytest.raises(SagaError, match="stuck_after must be > 0"):
        Hooks(callback=print, stuck_after=0)
    with pytest.raises(SagaError, match="attempts must be >= 1"):
        HookRetry(attempts=0)


async def test_a_store_without_notifications_is_refused() -> None:
    from sagakit.errors import SagaError  # noqa: PLC0415

    class Bare:
        pass

    bare: SagaStore = Bare()  # type: ignore[assignment]
    with pytest.raises(SagaError, match="keeps no notifications"):
        Notifier(bare, Hooks(callback=print))
