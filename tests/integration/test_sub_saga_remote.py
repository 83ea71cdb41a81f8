"""A sub-saga whose step is a remote command: the child sends it over
RabbitMQ to a participant, on PostgreSQL; its compensation is a remote
command too, sent when the parent rolls the child back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SagaStatus, Step, SubSaga
from sagakit.adapters.store.postgres import PostgresStore
from sagakit.definition import Remote
from sagakit.participant import Participant
from tests.conftest import delete_rabbitmq_queues

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


class Order(BaseModel):
    amount: int = 40
    no_truck: bool = False


class Payment(BaseModel):
    amount: int


class Charge(BaseModel):
    amount: int


class Charged(BaseModel):
    charge_id: str


class Bank:
    def __init__(self) -> None:
        self.log: list[str] = []

    def participant(self, transport: Any, store: Any) -> Participant:
        bank = Participant("bank", transport, store)

        @bank.handler("bank.charge")
        async def charge(cmd: Charge) -> Charged:
            self.log.append(f"charge {cmd.amount}")
            return Charged(charge_id=f"ch-{cmd.amount}")

        @bank.handler("bank.refund")
        async def refund(cmd: Charge) -> None:
            self.log.append(f"refund {cmd.amount}")

        return bank


async def noop(ctx: Any) -> str:
    return "ok"


async def ship(ctx: Order) -> None:
    if ctx.no_truck:
        raise RuntimeError("no truck")


payment = Saga(
    "payment",
    [
        Step(
            "charge",
            Remote(
                "bank.charge",
                payload=lambda p: Charge(amount=p.amount),
                reply=Charged,
            ),
            compensate=Remote("bank.refund", payload=lambda p: Charge(amount=p.amount)),
        )
    ],
    context=Payment,
)
order = Saga(
    "order",
    [
        Step("reserve", noop, compensate=noop),
        Step("pay", SubSaga(payment, context=lambda o: Payment(amount=o.amount))),
        Step("ship", ship),
    ],
    context=Order,
)


@pytest.fixture
async def running(
    pg_url: str, rabbitmq_url: str
) -> AsyncIterator[tuple[Orchestrator, Bank, PostgresStore]]:
    from sagakit.adapters.transport.rabbitmq import RabbitTransport  # noqa: PLC0415

    prefix = f"sagakit-test-{uuid.uuid4().hex[:12]}"
    transport = await RabbitTransport.connect(rabbitmq_url, prefix=prefix)
    store = await PostgresStore.connect(pg_url)
    bank = Bank()
    participant = bank.participant(transport, store)
    await participant.start()
    orch = Orchestrator(store, [order], transport=transport, deadline_interval=0.1)
    try:
        async with orch.serving():
            yield orch, bank, store
            await orch.drain()
    finally:
        await participant.stop()
        await transport.close()
        await store.close()
        await delete_rabbitmq_queues(*sorted(transport.declared_queues))


async def test_a_remote_child_succeeds_with_its_reply(
    running: tuple[Orchestrator, Bank, PostgresStore],
) -> None:
    orch, bank, store = running
    result = await orch.run(order, Order(), saga_id="r-1")
    assert result.status is SagaStatus.SUCCEEDED, result.error
    assert result.results["pay"] == {"charge": {"charge_id": "ch-40"}}
    assert bank.log == ["charge 40"]
    assert (await store.get("r-1/pay")).status is SagaStatus.SUCCEEDED


async def test_a_remote_child_is_rolled_back_over_the_broker(
    running: tuple[Orchestrator, Bank, PostgresStore],
) -> None:
    orch, bank, store = running
    result = await orch.run(order, Order(no_truck=True), saga_id="r-2")
    assert result.status is SagaStatus.COMPENSATED, result.error
    assert bank.log == ["charge 40", "refund 40"]
    child = await store.get("r-2/pay")
    assert child.status is SagaStatus.COMPENSATED
    assert [h.outcome for h in await store.history("r-2/pay") if h.kind == "saga"] == [
        "started",
        "succeeded",
        "rollback_requested",
        "compensated",
    ]
