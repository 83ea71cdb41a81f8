"""The client: submits and acts on sagas that workers run, on a real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import BaseModel

from sagakit import Orchestrator, RetryPolicy, Saga, SagaStatus, SQLiteStore, Step
from sagakit.errors import StateError
from sagakit.runtime import SagaClient


class Order(BaseModel):
    item: str = "pen"


def order_saga(log: list[str], *, broken: list[bool]) -> Saga[Order]:
    def ship(ctx: Order) -> str:
        log.append(f"ship {ctx.item}")
        if broken[0]:
            raise OSError("carrier down")
        return "shipped"

    return Saga(
        "order",
        [
            Step("charge", lambda ctx: "charged", pivot=True),
            Step("ship", ship, retry=RetryPolicy(attempts=1)),
        ],
        context=Order,
    )


async def test_a_submitted_saga_runs_in_a_worker_and_the_client_waits(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    definition = order_saga(log, broken=[False])
    client = SagaClient(SQLiteStore(tmp_path / "s.db"), [definition])
    saga_id = await client.submit(definition, {"item": "ink"}, idempotency_key="k")
    assert await client.submit(definition, idempotency_key="k") == saga_id
    assert (await client.result(saga_id)).status is SagaStatus.RUNNING
    assert log == []  # the client runs no step

    worker = Orchestrator(SQLiteStore(tmp_path / "s.db"), [definition])
    assert await worker.recover() == [saga_id]
    result = await asyncio.wait_for(client.wait(saga_id), 5)
    assert result.status is SagaStatus.SUCCEEDED
    assert result.context == Order(item="ink")
    assert log == ["ship ink"]


async def test_a_retry_is_committed_and_handed_over_to_a_worker(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    broken = [True]
    definition = order_saga(log, broken=broken)
    worker = Orchestrator(SQLiteStore(tmp_path / "s.db"), [definition])
    failed = await worker.run(definition)
    assert failed.status is SagaStatus.FAILED
    client = SagaClient(SQLiteStore(tmp_path / "s.db"), [definition], lease=30.0)
    with pytest.raises(StateError):
        await client.resume(failed.saga_id)
    broken[0] = False
    await client.retry(failed.saga_id, by="ops")
    assert (await client.result(failed.saga_id)).status is SagaStatus.RUNNING
    assert log == ["ship pen"]  # not run by the client
    assert await worker.recover() == [failed.saga_id]
    done = await asyncio.wait_for(client.wait(failed.saga_id), 5)
    assert done.status is SagaStatus.SUCCEEDED
    assert log == ["ship pen", "ship pen"]
