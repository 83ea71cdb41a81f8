"""A parent and its sub-saga as operators see them: ``sagakit show``'s report,
the dashboard's pages, its JSON API and its actions on a child's id."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from rich.console import Console

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step, SubSaga, admin
from sagakit.cli import render
from sagakit.dashboard import create_app

TOKEN = "s3cret-operator-token"  # noqa: S105 - a test token


class Ctx(BaseModel):
    ship_fails: bool = True


class Gate:
    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.reached = asyncio.Event()

    async def __call__(self, ctx: Ctx) -> str:
        self.reached.set()
        await self.open.wait()
        return "charged"


async def work(ctx: Ctx) -> str:
    return "done"


async def undo(ctx: Ctx) -> None:
    return None


async def ship(ctx: Ctx) -> None:
    if ctx.ship_fails:
        raise RuntimeError("no truck")


def sagas(gate: Gate | None = None) -> Saga[Ctx]:
    payment = Saga(
        "payment",
        [
            Step("authorize", work, compensate=undo),
            Step("charge", gate or work, compensate=undo),
        ],
        context=Ctx,
    )
    return Saga(
        "order",
        [
            Step("reserve", work, compensate=undo),
            Step("pay", SubSaga(payment)),
            Step("ship", ship),
        ],
        context=Ctx,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "views.db")
    yield opened
    await opened.close()


def text(renderable: Any) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(renderable)
    return console.export_text()


async def test_show_links_a_parent_and_its_child(store: SQLiteStore) -> None:
    order = sagas()
    await Orchestrator(store, [order]).run(order, Ctx(), saga_id="o-1")
    parent = await admin.show(store, "o-1")
    assert [c.saga_id for c in parent.children] == ["o-1/pay"]
    shown = text(render.saga_report(parent.record, parent.history, parent.children))
    assert "sub-saga pay  o-1/pay (payment) compensated" in shown
    child = await admin.show(store, "o-1/pay")
    assert child.children == []
    shown = text(render.saga_report(child.record, child.history))
    assert re.search(r"^parent +o-1 \(step pay\)", shown, re.MULTILINE)
    assert "rollback_requested" in shown


async def test_the_dashboard_links_both_ways_and_acts_on_a_child(
    store: SQLiteStore,
) -> None:
    gate = Gate()
    order = sagas(gate)
    orch = Orchestrator(store, [order])
    await orch.start(order, Ctx(ship_fails=False), saga_id="o-2")
    await gate.reached.wait()
    app = create_app(store, [order], token=TOKEN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = (await client.get("/sagas/o-2")).text
        assert "Sub-sagas" in page
        assert 'href="/sagas/o-2/pay"' in page
        page = (await client.get("/sagas/o-2/pay")).text
        assert 'Sub-saga of <a href="/sagas/o-2"' in page
        assert (await client.get("/sagas/o-2%2Fpay")).status_code == 200
        api = (await client.get("/api/sagas/o-2/pay")).json()
        assert api["parent"] == {"saga_id": "o-2", "step": "pay"}
        api = (await client.get("/api/sagas/o-2")).json()
        assert api["children"] == [
            {"step": "pay", "saga_id": "o-2/pay", "status": "running"}
        ]
        gate.open.set()
        result = await orch.wait("o-2")
        assert result.status is SagaStatus.SUCCEEDED
        refused = await client.post(
            "/sagas/o-2%2Fpay/cancel",
            headers={"Authorization": f"Bearer {TOKEN}", "X-Sagakit-Operator": "ops"},
            data={"reason": "too late"},
        )
        assert refused.status_code == 409
        assert "saga o-2/pay is succeeded: only a running saga" in refused.text
    await orch.drain()
