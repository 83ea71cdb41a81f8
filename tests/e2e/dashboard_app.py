"""Sagas for the dashboard's browser test: the trip example and an order saga
whose ``ship`` step fails while ``SHIPPING.down`` is set (in the process that
seeds the database; a worker process starts with it up).

Usage: sagakit --db DB dashboard --sagas tests.e2e.dashboard_app
       sagakit --db DB recover tests.e2e.dashboard_app
"""

from __future__ import annotations

from pydantic import BaseModel

from sagakit import Saga, Step
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

__all__ = ["SHIPPING", "order_saga", "trip_saga"]
