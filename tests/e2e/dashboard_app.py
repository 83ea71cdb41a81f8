"""Sagas for the dashboard's browser test: the trip example, an order saga
whose ``ship`` step fails while ``SHIPPING.down`` is set (in the process that
seeds the database; a worker process starts with it up), and a shipment
that pays through a sub-saga.

Usage: sagakit --db DB dashboard --sagas tests.e2e.dashboard_app
       sagakit --db DB recover tests.e2e.dashboard_app
"""

from __future__ import annotations

from pydantic import BaseModel

from sagakit import Saga, Step, SubSaga
from sagakit.examples.trip import trip_saga


class Shipping:
    down = False


SHIPPING = Shipping()


class Order(BaseModel):
    item: str = "lamp"


def reserve(ctx: Order) -> str:
    return f"R-{ctx.item}"


def release(ctx: Order, reference: str) -> None:
    return None


def charge(ctx: Order) -> str:
    return "C-1"


def ship(ctx: Order) -> str:
    if SHIPPING.down:
        raise ConnectionError("carrier API unreachable")
    return f"S-{ctx.item}"


order_saga: Saga[Order] = Saga(
    "order",
    [
        Step("reserve", reserve, compensate=release),
        Step("charge", charge, pivot=True),
        Step("ship", ship),
    ],
    context=Order,
)


class Payment(BaseModel):
    amount: int = 30


def authorize(ctx: Payment) -> str:
    return f"A-{ctx.amount}"


def void(ctx: Payment, reference: str) -> None:
    return None


def capture(ctx: Payment) -> str:
    return "P-1"


payment_saga: Saga[Payment] = Saga(
    "payment",
    [Step("authorize", authorize, compensate=void), Step("capture", capture)],
    context=Payment,
)

shipment_saga: Saga[Order] = Saga(
    "shipment",
    [
        Step("reserve", reserve, compensate=release),
        Step("pay", SubSaga(payment_saga, context=lambda order: Payment())),
        Step("ship", ship),
    ],
    context=Order,
)

__all__ = ["SHIPPING", "order_saga", "payment_saga", "shipment_saga", "trip_saga"]
