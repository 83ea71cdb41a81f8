"""A payment that waits for the gateway's webhook, at most five minutes.

``deposit`` charges the gateway and returns ``webhook("TIME_OUT",
delay=300)``: a durable timer. If the gateway's webhook arrives first,
``deliver_webhook`` hands its status to the pending ``webhook`` step
(``app.call``) and it runs at once; otherwise ``webhook`` runs after five
minutes with ``"TIME_OUT"`` and cancels the charge.

Run it: ``python examples/workflows/payment_webhook.py`` (in memory, with a
fake clock: the five minutes take no real time).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from sagakit.ports.clock import Clock
from sagakit.ports.workflow_store import WorkflowStore
from sagakit.workflow import WorkflowApp

APP = "payment_webhook"
TIME_OUT = "TIME_OUT"
CONFIRMED = "CONFIRMED"
DECLINED = "DECLINED"


class Payment(BaseModel):
    order_id: str
    amount: int


@dataclass
class Gateway:
    """Stand-in for the payment gateway. ``hold``, when set, keeps ``charge``
    waiting until it is set (to observe an instance mid-step)."""

    charges: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    hold: asyncio.Event | None = None

    async def charge(self, order_id: str, amount: int) -> None:
        if self.hold is not None:
            await self.hold.wait()
        self.charges.append(order_id)

    def cancel(self, order_id: str) -> None:
        self.cancelled.append(order_id)


class PaymentService:
    """The payment app on ``store``, and the entry points around it."""

    def __init__(
        self,
        store: WorkflowStore,
        *,
        gateway: Gateway | None = None,
        clock: Clock | None = None,
        timeout: float = 300.0,
        **options: Any,
    ) -> None:
        self.gateway = gateway or Gateway()
        self.app = app = WorkflowApp(APP, store, clock=clock, **options)
        gateway_ = self.gateway

        @app.step
        async def deposit(
            input: Payment, state: dict[str, Any], set_state: Any, logger: Any
        ) -> Any:
            await gateway_.charge(input.order_id, input.amount)
            set_state({**state, "order_id": input.order_id})
            logger.info("charged; waiting for the webhook")
            return webhook(TIME_OUT, delay=timeout)

        @app.step
        def webhook(
            input: str, state: dict[str, Any], set_state: Any, logger: Any
        ) -> None:
            set_state({**state, "outcome": input})
            if input != CONFIRMED:
                gateway_.cancel(state["order_id"])
                logger.warning("payment %s: %s", state["order_id"], input)

    async def pay(self, order_id: str, amount: int) -> str:
        """Start the payment of an order (idempotent per order)."""
        return await self.app.start(
            f"pay-{order_id}", "deposit", Payment(order_id=order_id, amount=amount)
        )

    async def deliver_webhook(self, instance_id: str, status: str) -> None:
        """What the HTTP endpoint of the webhook calls."""
        await self.app.call(instance_id, "webhook", status)


async def main() -> None:
    from sagakit.adapters.store.workflow_memory import (  # noqa: PLC0415
        InMemoryWorkflowStore,
    )
    from sagakit.testing import FakeClock  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    service = PaymentService(InMemoryWorkflowStore(), clock=FakeClock())
    confirmed = await service.pay("order-1", 10)
    late = await service.pay("order-2", 20)
    await service.app.run_until_idle()
    await service.deliver_webhook(confirmed, CONFIRMED)
    await service.app.advance(300)
    for instance_id in (confirmed, late):
        record = await service.app.get(instance_id)
        logging.getLogger(APP).info(
            "%s: %s %s", instance_id, record.status, record.state
        )


if __name__ == "__main__":
    asyncio.run(main())
