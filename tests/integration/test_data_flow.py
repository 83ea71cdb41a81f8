"""Results flowing between steps at run time: later local steps, later
``Remote`` payload builders and the compensations of other steps see what
earlier steps recorded, through a crash and recovery too, on SQLite and
PostgreSQL (orchestrator, outbox, relay and a participant over the
in-process transport)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import (
    Orchestrator,
    Results,
    RetryPolicy,
    Saga,
    SagaStatus,
    SQLiteStore,
    Step,
)
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.definition import Remote
from sagakit.participant import Participant
from sagakit.ports.store import SagaStore
from sagakit.testing import check_saga
from tests.conftest import OpenSagaStore


class Cart(BaseModel):
    items: int = 3
    fail_shipping: bool = False


class Quote(BaseModel):
    amount: int
    currency: str


class Charge(BaseModel):
    amount: int
    currency: str


class Charged(BaseModel):
    charge_id: int


class Refund(BaseModel):
    charge_id: int
    amount: int


class Shipped(Exception):
    """Shipping refused: the saga rolls back."""


class Shop:
    """The saga's functions, recording what each saw of ``results``."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}
        self.hang_hold = False
        self.holding = asyncio.Event()

    def quote(self, ctx: Cart) -> dict[str, Any]:
        return {"amount": ctx.items * 10, "currency": "EUR"}

    def void_quote(self, ctx: Cart, *, results: Results) -> None:
        self.seen["void_quote"] = {name: results[name] for name in results}

    async def hold(self, ctx: Cart, results: Results) -> str:
        self.seen["hold"] = results.get("quote")  # the declared output model
        if self.hang_hold:
            self.hang_hold = False
            self.holding.set()
            await asyncio.sleep(3600)  # the process dies here
        return "held"

    def charge(self, ctx: Cart, results: Results) -> Charge:
        quote = results.get("quote", Quote)
        return Charge(amount=quote.amount, currency=quote.currency)

    def refund(self, ctx: Cart, results: Results) -> Refund:
        charged = results.get("charge", Charged)
        return Refund(charge_id=charged.charge_id, amount=results["quote"]["amount"])

    def ship(self, ctx: Cart, results: Results) -> None:
        self.seen["ship"] = results.get("charge")
        if ctx.fail_shipping:
            raise Shipped("no courier")

    def saga(self) -> Saga[Cart]:
        return Saga(
            "checkout",
            [
                Step("quote", self.quote, self.void_quote, output=Quote),
                Step("hold", self.hold),
                Step(
                    "charge",
                    Remote("billing.charge", self.charge, reply=Charged),
                    compensate=Remote("billing.refund", self.refund),
                    timeout=10,
                ),
                Step("ship", self.ship),
            ],
            context=Cart,
        )


class Billing:
    """The participant that charges and refunds, recording the commands."""

    def __init__(self, transport: InProcessTransport, store: SagaStore) -> None:
        self.charges: list[Charge] = []
        self.refunds: list[Refund] = []
        self.participant = Participant("billing", transport, store)

        @self.participant.handler("billing.charge")
        def charge(cmd: Charge) -> Charged:
            self.charges.append(cmd)
            return Charged(charge_id=500 + len(self.charges))

        @self.participant.handler("billing.refund")
        def refund(cmd: Refund) -> None:
            self.refunds.append(cmd)


@pytest.fixture
async def billing(tmp_path: Path) -> AsyncIterator[Billing]:
    transport = InProcessTransport()
    service = Billing(transport, SQLiteStore(tmp_path / "billing.db"))
    await service.participant.start()
    yield service
    await transport.close()


def orchestrator(store: SagaStore, billing: Billing, saga: Saga[Any]) -> Orchestrator:
    transport = billing.participant.transport
    return Orchestrator(store, [saga], transport=transport, deadline_interval=0.05)


async def test_later_steps_and_payload_builders_see_earlier_results(
    open_saga_store: OpenSagaStore, billing: Billing
) -> None:
    shop = Shop()
    saga = shop.saga()
    orch = orchestrator(await open_saga_store(), billing, saga)
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(saga, Cart(items=4)), 10)
    assert result.status is SagaStatus.SUCCEEDED, result.error
    assert shop.seen["hold"] == Quote(amount=40, currency="EUR")
    assert billing.charges == [Charge(amount=40, currency="EUR")]
    assert shop.seen["ship"] == Charged(charge_id=501)  # the declared reply model
    assert result.results == {
        "quote": {"amount": 40, "currency": "EUR"},
        "hold": "held",
        "charge": {"charge_id": 501},
    }


async def test_compensations_see_the_results_of_other_steps(
    open_saga_store: OpenSagaStore, billing: Billing
) -> None:
    shop = Shop()
    saga = shop.saga()
    orch = orchestrator(await open_saga_store(), billing, saga)
    async with orch.serving():
        run = orch.run(saga, Cart(items=2, fail_shipping=True))
        result = await asyncio.wait_for(run, 10)
    assert result.status is SagaStatus.COMPENSATED, result.error
    assert billing.refunds == [Refund(charge_id=501, amount=20)]
    # compensated in reverse: the quote's undo sees every result, the refunded
    # charge's too
    assert shop.seen["void_quote"] == {
        "quote": {"amount": 20, "currency": "EUR"},
        "hold": "held",
        "charge": {"charge_id": 501},
    }


async def test_a_recovered_saga_sees_the_results_recorded_before_the_crash(
    open_saga_store: OpenSagaStore, billing: Billing
) -> None:
    shop = Shop()
    shop.hang_hold = True
    saga = shop.saga()
    crashed = orchestrator(await open_saga_store(), billing, saga)
    async with crashed.serving():
        saga_id = await crashed.start(saga, Cart(items=5, fail_shipping=True))
        await asyncio.wait_for(shop.holding.wait(), 5)
        for task in list(crashed.driver.tasks):  # as if the process were killed
            task.cancel()
        await asyncio.sleep(0)

    restarted_shop = Shop()
    restarted = orchestrator(await open_saga_store(), billing, restarted_shop.saga())
    async with restarted.serving():
        assert await restarted.recover() == [saga_id]
        result = await asyncio.wait_for(restarted.wait(saga_id), 10)
    assert result.status is SagaStatus.COMPENSATED, result.error
    seen = restarted_shop.seen
    assert seen["hold"] == Quote(amount=50, currency="EUR")  # re-run: from the store
    assert billing.charges == [Charge(amount=50, currency="EUR")]
    assert seen["ship"] == Charged(charge_id=501)
    assert billing.refunds == [Refund(charge_id=501, amount=50)]
    assert seen["void_quote"]["quote"] == {"amount": 50, "currency": "EUR"}


async def test_a_result_that_does_not_match_its_output_fails_without_retry(
    tmp_path: Path,
) -> None:
    calls: list[str] = []

    def quote(ctx: Cart) -> dict[str, Any]:
        calls.append("quote")
        return {"amount": "lots"}

    saga = Saga(
        "bad",
        [Step("quote", quote, output=Quote, retry=RetryPolicy(attempts=3))],
        context=Cart,
    )
    result = await Orchestrator(SQLiteStore(tmp_path / "bad.db")).run(saga, Cart())
    assert result.status is SagaStatus.COMPENSATED
    assert calls == ["quote"]
    assert result.error is not None
    assert result.error.type == "sagakit.errors.ResultError"
    assert result.error.message == (
        f"saga {result.saga_id}: step 'quote' returned dict, not a valid Quote "
        "(amount: Input should be a valid integer, unable to parse string as an "
        "integer)"
    )


async def test_asking_for_a_result_that_is_not_there_fails_the_step(
    tmp_path: Path,
) -> None:
    def early(ctx: Cart, results: Results) -> int:
        return results.get("late", Quote).amount

    saga = Saga(
        "early",
        [Step("early", early, retry=RetryPolicy(attempts=3)), Step("late", early)],
        context=Cart,
    )
    store = SQLiteStore(tmp_path / "early.db")
    result = await Orchestrator(store).run(saga, Cart())
    assert result.status is SagaStatus.COMPENSATED
    assert result.failed_step == "early"
    assert result.error is not None
    assert "step 'late' has not run yet" in result.error.message
    history = await store.history(result.saga_id)
    assert [h.attempt for h in history if h.kind == "action"] == [1]


async def test_check_saga_passes_results_to_the_steps_it_instruments() -> None:
    shop = Shop()
    report = await check_saga(shop.saga(), Cart(items=2))
    report.assert_ok()
    assert shop.seen["hold"] == Quote(amount=20, currency="EUR")
    assert shop.seen["ship"] == Charged(charge_id=1)  # the stub's reply
    assert shop.seen["void_quote"]["quote"] == {"amount": 20, "currency": "EUR"}
