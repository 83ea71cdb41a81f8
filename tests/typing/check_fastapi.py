"""Type-checked by mypy (see pyproject), never run: the FastAPI integration
fits FastAPI's own types (``lifespan=``, ``Depends``, ``mount``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel

from sagakit import Saga, SagaResult, SagaStatus, Step
from sagakit.integrations.fastapi import (
    Sagas,
    SagasDep,
    mount_dashboard,
    result_json,
    sagakit_lifespan,
)


class Order(BaseModel):
    order_id: str
    amount: int = 1


async def charge(order: Order) -> int:
    return order.amount


saga: Saga[Order] = Saga("order", [Step("charge", charge)], context=Order)


@asynccontextmanager
async def own(app: FastAPI) -> AsyncIterator[dict[str, str]]:
    yield {"greeting": "hello"}


lifespan = sagakit_lifespan("sqlite:///x.db", [saga], run="worker", lifespan=own)
app = FastAPI(lifespan=lifespan)


async def admins(request: Request) -> None:
    return None


mount_dashboard(app, lifespan, authorize=admins, path="/ops", token="t" * 16)


@app.post("/orders")
async def place(order: Order, sagas: SagasDep) -> dict[str, object]:
    saga_id: str = await sagas.start(saga, order, idempotency_key=order.order_id)
    status: SagaStatus = await sagas.status(saga_id)
    result: SagaResult[Any] = await sagas.result(saga_id)
    client: Sagas = lifespan.sagas
    assert client is sagas
    return {"status": status.value, **result_json(result)}
