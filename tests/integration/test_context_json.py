"""The context as stored: ``context_json`` is ``model_dump(mode="json")``."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field, computed_field

from sagakit.runtime.instance import context_json


class Order(BaseModel):
    order_id: str = Field(alias="orderId")
    amount: Decimal
    at: datetime
    ratio: float
    tags: tuple[str, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label(self) -> str:
        return f"order {self.order_id}"


class Masked(Order):
    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        return {"masked": True}


def test_context_json_is_model_dump_in_json_mode() -> None:
    order = Order(
        orderId="o1",
        amount=Decimal("12.50"),
        at=datetime(2026, 1, 2, tzinfo=UTC),
        ratio=math.inf,
        tags=("a",),
    )
    assert context_json(order) == order.model_dump(mode="json")
    assert context_json(order)["amount"] == "12.50"


def test_a_model_dump_of_its_own_is_used() -> None:
    masked = Masked(orderId="o1", amount=Decimal(1), at=datetime.now(UTC), ratio=0.5)
    assert context_json(masked) == {"masked": True}
