"""The saga: reserve the stock, then charge the card, both in Celery tasks.

::

    reserve_stock  -> stock.reserve   (undo: stock.release)
    charge_card    -> payment.charge  (a declined card fails the saga)

Each step is a ``Remote`` command: its payload goes out as a Celery task
message named after the command (``stock.reserve``) on the queue of the
Celery worker that runs it, and the task answers with a reply task to the
command's ``reply_to`` queue. A ``sagakit worker`` runs the saga::

    sagakit worker examples.flask_celery.orders --transport celery+amqp://... \
        --reply-queue replies

Queues are ``$FLASK_CELERY_QUEUE_PREFIX`` + ``stock`` / ``payment`` /
``replies`` (the prefix keeps several copies apart on one broker). The Flask
app starts sagas with the same reply queue: the commands of a saga's first
step leave with the start it commits.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from sagakit import Saga, Step
from sagakit.definition import Remote

REPLY_TIMEOUT = 30.0
"""Seconds a step waits for its Celery task's reply before it fails."""


def queue(service: str) -> str:
    return f"{os.environ.get('FLASK_CELERY_QUEUE_PREFIX', '')}{service}"


class Order(BaseModel):
    """The saga's context."""

    order_id: str = Field(min_length=1, max_length=100)
    item: str = Field(min_length=1)
    quantity: int = Field(gt=0)
    amount: int = Field(gt=0)


class StockRequest(BaseModel):
    order_id: str
    item: str
    quantity: int


class Charge(BaseModel):
    order_id: str
    amount: int


class Reserved(BaseModel):
    reservation_id: str


class Charged(BaseModel):
    payment_id: str


def stock_request(order: Order) -> StockRequest:
    return StockRequest(
        order_id=order.order_id, item=order.item, quantity=order.quantity
    )


def charge(order: Order) -> Charge:
    return Charge(order_id=order.order_id, amount=order.amount)


order_saga: Saga[Order] = Saga(
    "flask_celery_order",
    [
        Step(
            "reserve_stock",
            Remote(
                "stock.reserve", stock_request, queue=queue("stock"), reply=Reserved
            ),
            compensate=Remote("stock.release", stock_request, queue=queue("stock")),
            timeout=REPLY_TIMEOUT,
            compensation_timeout=REPLY_TIMEOUT,
        ),
        Step(
            "charge_card",
            Remote("payment.charge", charge, queue=queue("payment"), reply=Charged),
            timeout=REPLY_TIMEOUT,
        ),
    ],
    context=Order,
)
