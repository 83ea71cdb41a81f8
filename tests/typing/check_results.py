"""Type-checked by mypy (see pyproject), never run: data flow between steps
types well in user code."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from sagakit import Results, Saga, Step
from sagakit.definition import Remote


class Order(BaseModel):
    amount: int


class Reserved(BaseModel):
    reservation_id: str


class Charge(BaseModel):
    reservation_id: str
    amount: int


def reserve(ctx: Order) -> Reserved:
    return Reserved(reservation_id="r-1")


def release(ctx: Order, *, results: Results) -> None:
    reserved: Reserved = results.get("reserve", Reserved)
    raw: Any = results["reserve"]
    if "charge" in results:
        print(reserved.reservation_id, raw, len(results), list(results))


def charge(ctx: Order, results: Results) -> Charge:
    reservation_id = results.get("reserve", Reserved).reservation_id
    return Charge(reservation_id=reservation_id, amount=ctx.amount)


def count(ctx: Order, results: Results) -> int:
    amounts: list[int] = results.get("amounts", list[int])
    return len(amounts) + results.get("reserve", Reserved).reservation_id.count("r")


order: Saga[Order] = Saga(
    "order",
    [
        Step("reserve", reserve, compensate=release, output=Reserved),
        Step("charge", Remote("billing.charge", charge, reply=Reserved)),
        Step("count", count),
    ],
    context=Order,
)
