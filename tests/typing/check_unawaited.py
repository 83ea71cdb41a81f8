"""Type-checked by mypy (see pyproject), never run: commands sent without a
reply wait type well in user code."""

from __future__ import annotations

from pydantic import BaseModel

from sagakit import Saga, Step
from sagakit.definition import Remote
from sagakit.engine import SendCancel


class Order(BaseModel):
    order_id: int


class CancelTicket(BaseModel):
    order_id: int


def by_order(ctx: Order) -> CancelTicket:
    return CancelTicket(order_id=ctx.order_id)


order: Saga[Order] = Saga(
    "order",
    [
        Step(
            "create_ticket",
            Remote(
                "kitchen.create_ticket",
                by_order,
                on_timeout=Remote("kitchen.cancel_ticket", payload=by_order),
            ),
            compensate=Remote("kitchen.reject_ticket", by_order, awaited=False),
            timeout=30,
        )
    ],
    context=Order,
)

awaited: bool = Remote("kitchen.reject_ticket", awaited=False).awaited
cancel: Remote | None = Remote("kitchen.create_ticket").on_timeout
sent: SendCancel = SendCancel("create_ticket", 1)
