"""On PostgreSQL, with two connection pools as two processes have: a taken
id is one ``SagaAlreadyExists`` for sagas and workflow-style instances alike
(concurrent starts included), and a workflow instance ends with the value
its last step returned or at once on a ``FatalError``, readable after a
restart and in ``sagakit workflows show``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from sagakit import (
    FatalError,
    Orchestrator,
    RetryPolicy,
    Saga,
    SagaAlreadyExists,
    SagaStatus,
    Step,
)
from sagakit.adapters.store.postgres import PostgresStore
from sagakit.adapters.store.workflow_postgres import PostgresWorkflowStore
from sagakit.cli.main import app as cli
from sagakit.errors import StepFailed
from sagakit.ports.workflow_store import WorkflowStatus
from sagakit.runtime import SagaClient
from sagakit.testing import FakeClock
from sagakit.workflow import WorkflowApp
from tests.conftest import run_sync

pytestmark = pytest.mark.postgres


class Order(BaseModel):
    item: str = "pen"


def order_saga(tries: list[str]) -> Saga[Order]:
    def charge(ctx: Order) -> str:
        tries.append(ctx.item)
        if ctx.item == "stolen card":
            raise FatalError("card reported stolen")
        return "charged"

    return Saga(
        "order",
        [Step("charge", charge, retry=RetryPolicy(attempts=4, backoff=0))],
        context=Order,
    )


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    """Two pools on one database: two processes."""
    opened = [await PostgresStore.connect(pg_url, migrate=False) for _ in range(2)]
    yield opened
    for store in opened:
        await store.close()


# -- sagas -------------------------------------------------------------------


async def test_concurrent_submits_of_one_saga_id_start_it_once(
    stores: list[PostgresStore],
) -> None:
    saga = order_saga([])
    clients = [SagaClient(store, [saga]) for store in stores]
    outcomes = await asyncio.gather(
        *(
            clients[n % 2].submit(saga, {"item": f"item {n}"}, saga_id="o-1")
            for n in range(6)
        ),
        return_exceptions=True,
    )
    assert outcomes.count("o-1") == 1, outcomes
    refused = [o for o in outcomes if isinstance(o, SagaAlreadyExists)]
    assert len(refused) == 5, outcomes
    assert {(e.saga_id, e.status) for e in refused} == {("o-1", "running")}
    assert all(str(e) == "saga o-1 exists already (status running)" for e in refused)
    # an idempotency key still returns the instance it started
    first = await clients[0].submit(saga, idempotency_key="k", saga_id="o-2")
    again = await clients[1].submit(saga, idempotency_key="k", saga_id="o-3")
    assert (first, again) == ("o-2", "o-2")


async def test_starting_a_finished_saga_again_names_its_status(
    stores: list[PostgresStore],
) -> None:
    saga = order_saga([])
    done = await Orchestrator(stores[0], [saga]).run(saga, saga_id="o-1")
    assert done.status is SagaStatus.SUCCEEDED
    with pytest.raises(SagaAlreadyExists, match="status succeeded") as caught:
        await Orchestrator(stores[1], [saga]).run(saga, saga_id="o-1")
    assert (caught.value.saga_id, caught.value.status) == ("o-1", "succeeded")


async def test_a_fatal_error_in_a_saga_step_is_not_retried(
    stores: list[PostgresStore],
) -> None:
    tries: list[str] = []
    saga = order_saga(tries)
    result = await Orchestrator(stores[0], [saga]).run(saga, {"item": "stolen card"})
    assert result.status is SagaStatus.COMPENSATED  # rolled back at once
    assert result.error is not None
    assert result.error.message == "card reported stolen"
    assert tries == ["stolen card"]  # RetryPolicy(attempts=4) aside


# -- workflow-style instances ------------------------------------------------


def checkout(store: PostgresWorkflowStore, clock: FakeClock) -> WorkflowApp:
    app = WorkflowApp("checkout", store, clock=clock, max_attempts=5)

    @app.step
    async def charge(order: dict[str, Any]) -> Any:
        if order["card"] == "stolen":
            raise FatalError(f"card of {order['id']} reported stolen")
        return receipt(order)

    @app.step
    async def receipt(order: dict[str, Any]) -> dict[str, Any]:
        return {"order": order["id"], "total": 12.5, "lines": ["pen", "ink"]}

    return app


@pytest.fixture
async def workflow_stores(
    stores: list[PostgresStore],
) -> list[PostgresWorkflowStore]:
    return [PostgresWorkflowStore.on(store) for store in stores]


async def test_concurrent_workflow_starts_of_one_id_give_one_instance(
    workflow_stores: list[PostgresWorkflowStore],
) -> None:
    clock = FakeClock()
    apps = [checkout(store, clock) for store in workflow_stores]
    outcomes = await asyncio.gather(
        *(
            apps[n % 2].start("c-1", "charge", {"id": "c-1", "card": f"card {n}"})
            for n in range(6)
        ),
        return_exceptions=True,
    )
    assert outcomes.count("c-1") == 1, outcomes
    refused = [o for o in outcomes if isinstance(o, SagaAlreadyExists)]
    assert len(refused) == 5, outcomes
    assert {(e.saga_id, e.status, e.app) for e in refused} == {
        ("c-1", "pending", "checkout")
    }
    winner = await apps[1].get("c-1")
    same = await apps[1].start("c-1", "charge", winner.input)
    assert same == "c-1"
    assert len(await apps[0].history("c-1")) == 1


async def run_checkouts(store: PostgresWorkflowStore, clock: FakeClock) -> None:
    """``c-ok`` ends with a receipt, ``c-stolen`` on a ``FatalError``."""
    app = checkout(store, clock)
    await app.start("c-ok", "charge", {"id": "c-ok", "card": "visa"})
    await app.start("c-stolen", "charge", {"id": "c-stolen", "card": "stolen"})
    assert await app.run_until_idle() == 3  # charge twice, receipt once


async def test_workflow_endings_survive_a_restart(
    workflow_stores: list[PostgresWorkflowStore],
) -> None:
    clock = FakeClock()
    await run_checkouts(workflow_stores[0], clock)
    restarted = checkout(workflow_stores[1], clock)  # another pool: a restart
    receipt = {"order": "c-ok", "total": 12.5, "lines": ["pen", "ink"]}
    assert await restarted.result("c-ok") == receipt
    assert (await restarted.get("c-ok")).result == receipt
    stolen = await restarted.get("c-stolen")
    assert stolen.status is WorkflowStatus.FAILED
    assert stolen.attempts == 1  # max_attempts=5 aside
    assert stolen.error == (
        "step charge failed: FatalError: card of c-stolen reported stolen"
    )
    with pytest.raises(StepFailed, match="reported stolen"):
        await restarted.result("c-stolen")


def test_workflows_show_prints_the_result_and_the_fatal_error(pg_url: str) -> None:
    async def fill() -> None:
        store = await PostgresWorkflowStore.connect(pg_url, migrate=False)
        try:
            await run_checkouts(store, FakeClock())
        finally:
            await store.close()

    def show(instance_id: str) -> str:
        shown = CliRunner().invoke(
            cli, ["--db", pg_url, "workflows", "show", instance_id]
        )
        assert shown.exit_code == 0, shown.output
        return shown.output

    run_sync(fill())
    ok, stolen = show("c-ok"), show("c-stolen")
    assert "succeeded" in ok
    assert '"total": 12.5' in ok
    assert "FatalError: card of c-stolen reported stolen" in stolen
    assert '"total"' not in stolen
