"""A graph saga of remote steps on PostgreSQL and RabbitMQ (issue 16, items 1,
2, 3 and 8): results flow between branches, the ``continue`` rollback policy
attempts every compensation, and the result tells what the pivot did.

Real PostgreSQL store, real broker, participants in this process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import Orchestrator, Results, Saga, SagaStatus, Step
from sagakit.definition import Remote
from sagakit.participant import CommandRejected, Participant
from tests.conftest import delete_rabbitmq_queues

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


class Order(BaseModel):
    order_id: int
    amount: int = 40


class Ticket(BaseModel):
    ticket_id: int


class Charged(BaseModel):
    charge_id: str


class Services:
    """Kitchen, accounting and shipping, with what each was asked to do."""

    def __init__(self, transport: Any, store: Any) -> None:
        self.participants = [
            Participant(name, transport, store)
            for name in ("kitchen", "accounting", "shipping")
        ]
        kitchen, accounting, shipping = self.participants
        self.done: list[tuple[str, Any]] = []
        self.refuse_shipping = False
        self.refuse_refund = False

        @kitchen.handler("kitchen.create_ticket")
        def create_ticket(cmd: dict[str, int]) -> Ticket:
            self.done.append(("ticket", cmd["order_id"]))
            return Ticket(ticket_id=500 + cmd["order_id"])

        @kitchen.handler("kitchen.cancel_ticket")
        def cancel_ticket(cmd: dict[str, int]) -> None:
            self.done.append(("cancel_ticket", cmd["ticket_id"]))

        @accounting.handler("accounting.charge")
        def charge(cmd: dict[str, int]) -> Charged:
            self.done.append(("charge", cmd["amount"]))
            return Charged(charge_id=f"ch-{cmd['order_id']}")

        @accounting.handler("accounting.refund")
        def refund(cmd: dict[str, str]) -> None:
            if self.refuse_refund:
                raise CommandRejected("refunds are closed today")
            self.done.append(("refund", cmd["charge_id"]))

        @shipping.handler("shipping.ship")
        def ship(cmd: dict[str, Any]) -> dict[str, str]:
            if self.refuse_shipping:
                raise CommandRejected("no courier")
            self.done.append(("ship", (cmd["ticket_id"], cmd["charge_id"])))
            return {"tracking": f"T{cmd['ticket_id']}"}

        @shipping.handler("shipping.notify")
        def notify(cmd: dict[str, str]) -> None:
            self.done.append(("notify", cmd["tracking"]))


def graph_saga(undone: list[int]) -> Saga[Order]:
    """order -> (ticket | charge) -> ship (pivot) -> notify."""

    def open_order(ctx: Order) -> dict[str, int]:
        return {"order_id": ctx.order_id}

    def close_order(ctx: Order) -> None:
        undone.append(ctx.order_id)

    def ship_payload(ctx: Order, results: Results) -> dict[str, Any]:
        return {
            "ticket_id": results.get("ticket", Ticket).ticket_id,
            "charge_id": results.get("charge", Charged).charge_id,
        }

    return Saga(
        "graph_order",
        [
            Step("order", open_order, compensate=close_order),
            Step(
                "ticket",
                Remote(
                    "kitchen.create_ticket",
                    lambda ctx: {"order_id": ctx.order_id},
                    reply=Ticket,
                ),
                compensate=Remote(
                    "kitchen.cancel_ticket",
                    lambda ctx, result: {"ticket_id": result["ticket_id"]},
                ),
                after=("order",),
                timeout=10,
            ),
            Step(
                "charge",
                Remote(
                    "accounting.charge",
                    lambda ctx: {"order_id": ctx.order_id, "amount": ctx.amount},
                    reply=Charged,
                ),
                compensate=Remote(
                    "accounting.refund",
                    lambda ctx, result: {"charge_id": result["charge_id"]},
                ),
                after=("order",),
                timeout=10,
            ),
            Step(
                "ship",
                Remote("shipping.ship", ship_payload),
                after=("ticket", "charge"),
                pivot=True,
                timeout=10,
            ),
            Step(
                "notify",
                Remote(
                    "shipping.notify",
                    lambda ctx, results: {"tracking": results["ship"]["tracking"]},
                ),
                timeout=10,
            ),
        ],
        context=Order,
        on_compensation_failure="continue",
    )


@pytest.fixture
async def world(
    pg_url: str, rabbitmq_url: str
) -> AsyncIterator[tuple[Any, Any, Services]]:
    from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415
    from sagakit.adapters.transport.rabbitmq import RabbitTransport  # noqa: PLC0415

    prefix = f"sagakit-test-{uuid.uuid4().hex[:12]}"
    store = await PostgresStore.connect(pg_url, max_size=4)
    transport = await RabbitTransport.connect(rabbitmq_url, prefix=prefix)
    services = Services(transport, store)
    for participant in services.participants:
        await participant.start()
    try:
        yield store, transport, services
    finally:
        await transport.close()
        await delete_rabbitmq_queues(*sorted(transport.declared_queues))
        await store.close()


async def run(world: tuple[Any, Any, Services], order: Order) -> Any:
    store, transport, _ = world
    undone: list[int] = []
    saga = graph_saga(undone)
    orchestrator = Orchestrator(
        store, [saga], transport=transport, deadline_interval=0.05
    )
    async with orchestrator.serving():
        result = await asyncio.wait_for(orchestrator.run(saga, order), 30)
    return result, undone


async def test_branches_feed_the_pivot_and_the_result_says_so(
    world: tuple[Any, Any, Services],
) -> None:
    result, undone = await run(world, Order(order_id=7))
    services = world[2]
    assert result.status is SagaStatus.SUCCEEDED, result.error
    # both branches ran (in either order), then ship with both of their results
    assert sorted(services.done[:2]) == [("charge", 40), ("ticket", 7)]
    assert services.done[2:] == [("ship", (507, "ch-7")), ("notify", "T507")]
    assert result.pivot_reached
    assert result.committed_past_pivot == ("notify",)
    assert result.results["ticket"] == {"ticket_id": 507}
    assert undone == []


async def test_continue_attempts_every_compensation_and_lists_the_errors(
    world: tuple[Any, Any, Services],
) -> None:
    services = world[2]
    services.refuse_shipping = True
    services.refuse_refund = True
    result, undone = await run(world, Order(order_id=8))
    assert result.status is SagaStatus.COMPENSATION_FAILED
    assert result.failed_step == "ship"
    assert result.error is not None
    assert result.error.message == "no courier"
    # the refund failed for good; the ticket was still cancelled and, once both
    # branches had settled, the order closed
    assert [step for step, _ in result.compensation_errors] == ["charge"]
    assert result.compensation_errors[0][1].message == "refunds are closed today"
    assert ("cancel_ticket", 508) in services.done
    assert undone == [8]
    assert not result.pivot_reached
    assert result.committed_past_pivot == ()
    with pytest.raises(Exception, match="refunds are closed today"):
        result.raise_for_status()
