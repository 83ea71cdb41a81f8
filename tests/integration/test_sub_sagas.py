"""Sub-sagas through the real Orchestrator on SQLite and PostgreSQL: a child
that succeeds, one that fails, one rolled back when its parent fails later,
a rollback that fails and is resumed, nested children, and a child driven by
another worker than its parent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import (
    Orchestrator,
    Parallel,
    RetryPolicy,
    Saga,
    SagaNotFound,
    SagaStatus,
    Step,
    StepStatus,
    SubSaga,
)
from sagakit.engine.state import ParentLink
from sagakit.ports.store import SagaStore
from tests.conftest import OpenSagaStore

ONCE = RetryPolicy(attempts=1)


class Order(BaseModel):
    total: int = 30
    card_declined: bool = False
    no_truck: bool = False


class Payment(BaseModel):
    amount: int
    declined: bool = False
    refund_broken: bool = False


class Declined(Exception):
    pass


class Broken(Exception):
    pass


@pytest.fixture
async def store(open_saga_store: OpenSagaStore) -> SagaStore:
    """This test's store: a SQLite file, then PostgreSQL."""
    return await open_saga_store()


class Shop:
    """The order and payment sagas, recording what their steps did."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.refund_fixed = False

    def step(self, name: str) -> Callable[[Any], Any]:
        async def action(ctx: Any) -> str:
            self.log.append(name)
            if name == "charge" and ctx.declined:
                raise Declined("card declined")
            if name == "ship" and ctx.no_truck:
                raise RuntimeError("no truck")
            return f"{name}-ok"

        return action

    def undo(self, name: str) -> Callable[[Any], Any]:
        async def compensate(ctx: Any) -> None:
            if name == "charge" and ctx.refund_broken and not self.refund_fixed:
                self.log.append("undo charge failed")
                raise Broken("refund API down")
            self.log.append(f"undo {name}")

        return compensate

    def payment(self) -> Saga[Payment]:
        return Saga(
            "payment",
            [
                Step("authorize", self.step("authorize"), self.undo("authorize")),
                Step(
                    "charge",
                    self.step("charge"),
                    self.undo("charge"),
                    compensation_retry=ONCE,
                ),
            ],
            context=Payment,
        )

    def order(self, payment: Saga[Payment] | None = None, **sub: Any) -> Saga[Order]:
        sub.setdefault(
            "context",
            lambda o: Payment(amount=o.total, declined=o.card_declined),
        )
        return Saga(
            "order",
            [
                Step("reserve", self.step("reserve"), self.undo("reserve")),
                Step("pay", SubSaga(payment or self.payment(), **sub)),
                Step("ship", self.step("ship")),
            ],
            context=Order,
        )


async def test_the_parent_step_succeeds_with_its_child(store: SagaStore) -> None:
    shop = Shop()
    order = shop.order()
    orch = Orchestrator(store, [order])
    result = await orch.run(order, Order(), saga_id="o-1")
    assert result.status is SagaStatus.SUCCEEDED
    assert result.results["pay"] == {"authorize": "authorize-ok", "charge": "charge-ok"}
    assert shop.log == ["reserve", "authorize", "charge", "ship"]
    child = await store.get("o-1/pay")
    assert child.saga_name == "payment"
    assert child.status is SagaStatus.SUCCEEDED
    assert child.state.parent == ParentLink("o-1", "pay")
    assert child.context == {"amount": 30, "declined": False, "refund_broken": False}
    await orch.drain()


async def test_the_output_makes_the_step_result(store: SagaStore) -> None:
    shop = Shop()
    order = shop.order(output=lambda ctx, results: {"paid": ctx.amount, **results})
    orch = Orchestrator(store, [order])
    result = await orch.run(order, Order(total=7))
    assert result.results["pay"] == {
        "paid": 7,
        "authorize": "authorize-ok",
        "charge": "charge-ok",
    }


async def test_a_child_that_fails_fails_its_step(store: SagaStore) -> None:
    shop = Shop()
    order = shop.order()
    orch = Orchestrator(store, [order])
    result = await orch.run(order, Order(card_declined=True), saga_id="o-2")
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "pay"
    assert result.error is not None
    assert result.error.type.endswith("Declined")
    assert result.error.message == (
        "sub-saga o-2/pay ended compensated (charge failed): card declined"
    )
    assert shop.log == [
        "reserve",
        "authorize",
        "charge",
        "undo authorize",
        "undo reserve",
    ]
    child = await store.get("o-2/pay")
    assert child.status is SagaStatus.COMPENSATED


async def test_a_parent_failing_later_rolls_its_child_back(store: SagaStore) -> None:
    shop = Shop()
    order = shop.order()
    orch = Orchestrator(store, [order])
    result = await orch.run(order, Order(no_truck=True), saga_id="o-3")
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "ship"
    # the whole child is undone before what came before it in the parent
    assert shop.log == [
        "reserve",
        "authorize",
        "charge",
        "ship",
        "undo charge",
        "undo authorize",
        "undo reserve",
    ]
    child = await store.get("o-3/pay")
    assert child.status is SagaStatus.COMPENSATED
    assert child.state.error is not None
    assert child.state.error.type == "RolledBack"
    lines = [(h.outcome, h.result) for h in await store.history("o-3/pay")]
    assert (
        "rollback_requested",
        {"by": "parent o-3", "parent": "o-3", "step": "pay", "compensation": 1},
    ) in lines
    parent = await store.get("o-3")
    assert parent.state.step("pay").status is StepStatus.COMPENSATED


async def test_a_failed_rollback_of_a_child_is_resumed_through_its_parent(
    store: SagaStore,
) -> None:
    shop = Shop()
    order = shop.order(
        context=lambda o: Payment(amount=o.total, refund_broken=True),
    )
    orch = Orchestrator(store, [order])
    result = await orch.run(order, Order(no_truck=True), saga_id="o-4")
    assert result.status is SagaStatus.COMPENSATION_FAILED
    assert result.compensation_step == "pay"
    assert result.compensation_error is not None
    assert "refund API down" in result.compensation_error.message
    assert (await store.get("o-4/pay")).status is SagaStatus.COMPENSATION_FAILED
    assert "undo reserve" not in shop.log  # stopped: reserve waits

    shop.refund_fixed = True
    await orch.resume("o-4")
    final = await orch.wait("o-4")
    assert final.status is SagaStatus.COMPENSATED
    assert (await store.get("o-4/pay")).status is SagaStatus.COMPENSATED
    assert shop.log[-3:] == ["undo charge", "undo authorize", "undo reserve"]
    await orch.drain()


async def test_children_of_children(store: SagaStore) -> None:
    shop = Shop()
    billing = Saga(
        "billing",
        [
            Step("pay", SubSaga(shop.payment())),
            Step("invoice", shop.step("invoice"), shop.undo("invoice")),
        ],
        context=Payment,
    )
    order = Saga(
        "order",
        [
            Step("bill", SubSaga(billing, context=lambda o: {"amount": o.total})),
            Step("ship", shop.step("ship")),
        ],
        context=Order,
    )
    orch = Orchestrator(store, [order])
    result = await orch.run(order, Order(no_truck=True), saga_id="o-5")
    assert result.status is SagaStatus.COMPENSATED
    assert (await store.get("o-5/bill")).status is SagaStatus.COMPENSATED
    grandchild = await store.get("o-5/bill/pay")
    assert grandchild.status is SagaStatus.COMPENSATED
    assert grandchild.state.parent == ParentLink("o-5/bill", "pay")
    assert shop.log[-3:] == ["undo invoice", "undo charge", "undo authorize"]


async def test_a_child_driven_by_another_worker_reaches_its_parent(
    store: SagaStore,
) -> None:
    """Worker A drives the parent and starts the child, then lets the child
    go (as in a rolling restart); worker B claims the child and ends it: A
    learns of that end through the store."""
    gate = asyncio.Event()
    started = asyncio.Event()

    async def slow(ctx: Payment) -> str:
        started.set()
        await gate.wait()
        return "slow-ok"

    payment = Saga("payment", [Step("slow", slow)], context=Payment)
    order = Shop().order(payment)
    a = Orchestrator(store, [order], worker_id="worker-a", lease=30)
    b = Orchestrator(store, [order], worker_id="worker-b", lease=30)
    a.driver.child_poll = 0.05
    await a.start(order, Order(), saga_id="o-6")
    await started.wait()
    child = a.driver.active["o-6/pay"]
    assert child.driver is not None
    child.driver.cancel()
    await asyncio.gather(child.driver, return_exceptions=True)
    await store.release("worker-a", ["o-6/pay"])
    gate.set()
    assert await b.recover() == ["o-6/pay"]
    result = await a.wait("o-6")
    assert result.status is SagaStatus.SUCCEEDED
    assert result.results["pay"] == {"slow": "slow-ok"}
    await a.stop_driving()
    await b.stop_driving()


async def test_a_fail_fast_group_cancels_its_running_child(store: SagaStore) -> None:
    gate = asyncio.Event()
    started = asyncio.Event()
    log: list[str] = []

    async def slow(ctx: Payment) -> str:
        started.set()
        await gate.wait()
        log.append("slow")
        return "slow-ok"

    async def undo_slow(ctx: Payment) -> None:
        log.append("undo slow")

    async def out_of_stock(ctx: Order) -> None:
        await started.wait()
        raise LookupError("out of stock")

    payment = Saga(
        "payment",
        [Step("slow", slow, compensate=undo_slow), Step("late", Shop().step("late"))],
        context=Payment,
    )
    order = Saga(
        "order",
        [
            Parallel(
                Step("pay", SubSaga(payment, context=lambda o: {"amount": 1})),
                Step("pack", out_of_stock),
                on_failure="fail_fast",
            )
        ],
        context=Order,
    )
    orch = Orchestrator(store, [order])
    await orch.start(order, Order(), saga_id="o-7")
    await started.wait()
    child_here = orch.driver.active["o-7/pay"]
    # the cancel is queued while slow runs (nothing to wait on but the queue)
    while child_here.queue.empty():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    gate.set()
    result = await orch.wait("o-7")
    assert result.status is SagaStatus.COMPENSATED
    child = await store.get("o-7/pay")
    assert child.status is SagaStatus.COMPENSATED
    assert child.state.error is not None
    assert child.state.error.type == "Cancelled"
    assert log == ["slow", "undo slow"]  # late never ran
    assert result.failed_step == "pack"
    await orch.drain()


class Flaky:
    """A step that fails until fixed."""

    def __init__(self) -> None:
        self.fixed = False
        self.runs = 0

    async def __call__(self, ctx: Any) -> str:
        self.runs += 1
        if not self.fixed:
            raise RuntimeError("carrier down")
        return "shipped"


def after_the_pivot(child: Saga[Any]) -> Saga[Order]:
    return Saga(
        "order",
        [
            Step("bill", Shop().step("bill"), pivot=True),
            Step("ship", SubSaga(child, context=lambda o: {"amount": o.total})),
        ],
        context=Order,
    )


async def test_retrying_a_parent_runs_a_fresh_child_for_one_compensated(
    store: SagaStore,
) -> None:
    flaky = Flaky()
    shipping = Saga("shipping", [Step("ship", flaky)], context=Payment)
    order = after_the_pivot(shipping)
    orch = Orchestrator(store, [order])
    result = await orch.run(order, Order(), saga_id="o-8")
    assert result.status is SagaStatus.FAILED
    assert (await store.get("o-8/ship")).status is SagaStatus.COMPENSATED

    flaky.fixed = True
    await orch.retry("o-8")
    result = await orch.wait("o-8")
    assert result.status is SagaStatus.SUCCEEDED
    fresh = await store.get("o-8/ship#2")
    assert fresh.status is SagaStatus.SUCCEEDED
    assert fresh.state.parent == ParentLink("o-8", "ship")
    assert result.results["ship"] == {"ship": "shipped"}
    await orch.drain()


async def test_retrying_a_parent_retries_a_child_failed_past_its_pivot(
    store: SagaStore,
) -> None:
    flaky = Flaky()
    shipping = Saga(
        "shipping",
        [Step("label", Shop().step("label"), pivot=True), Step("ship", flaky)],
        context=Payment,
    )
    order = after_the_pivot(shipping)
    orch = Orchestrator(store, [order])
    result = await orch.run(order, Order(), saga_id="o-9")
    assert result.status is SagaStatus.FAILED
    assert (await store.get("o-9/ship")).status is SagaStatus.FAILED

    flaky.fixed = True
    await orch.retry("o-9")
    result = await orch.wait("o-9")
    assert result.status is SagaStatus.SUCCEEDED
    child = await store.get("o-9/ship")  # the same child, retried
    assert child.status is SagaStatus.SUCCEEDED
    with pytest.raises(SagaNotFound):
        await store.get("o-9/ship#2")
    assert flaky.runs == 2
    await orch.drain()
