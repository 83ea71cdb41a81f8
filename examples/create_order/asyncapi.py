"""The AsyncAPI description of the CreateOrder services.

``sagakit asyncapi examples.create_order`` renders it (``--format json`` for
JSON); ``sagakit diagram examples.create_order.order_service:create_order_saga``
draws the saga.
"""

from __future__ import annotations

from examples.create_order.accounting_service import accounting
from examples.create_order.consumer_service import consumers
from examples.create_order.kitchen_service import kitchen
from examples.create_order.order_service import create_order_saga
from sagakit.asyncapi import describe

docs = describe(
    sagas=[create_order_saga],
    participants=[consumers, kitchen, accounting],
    servers={
        "rabbitmq": "amqp://127.0.0.1:5672/",
        "redis": "redis://127.0.0.1:6379/0",
    },
    title="CreateOrder",
    version="1.0.0",
    description="An order service orchestrating consumer, kitchen and accounting "
    "services over a message broker.",
)
