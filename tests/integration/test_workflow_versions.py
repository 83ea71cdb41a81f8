"""A workflow instance pending on a step the next release no longer
registers is reported waiting (status and reason), never silently pending;
a process that has the step runs it and clears the reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.cli.main import app as cli
from sagakit.ports.workflow_store import WorkflowStatus, WorkflowStore
from sagakit.testing import FakeClock
from sagakit.workflow import WorkflowApp


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[WorkflowStore]:
    opened: WorkflowStore
    if request.param == "sqlite":
        opened = SQLiteWorkflowStore(tmp_path / "workflows.db")
    else:
        from sagakit.adapters.store.workflow_postgres import (  # noqa: PLC0415
            PostgresWorkflowStore,
        )

        opened = await PostgresWorkflowStore.connect(request.getfixturevalue("pg_url"))
    yield opened
    await opened.close()


def release(store: WorkflowStore, clock: FakeClock, *, with_ship: bool) -> WorkflowApp:
    app = WorkflowApp("orders", store, clock=clock)

    @app.step
    async def pack(order: str, state: Any, set_state: Any, logger: Any) -> Any:
        return ship(order) if with_ship else None

    if with_ship:

        @app.step
        async def ship(order: str, state: Any, set_state: Any, logger: Any) -> None:
            set_state({"shipped": order})

    else:

        def ship(order: str) -> Any:  # never called
            raise AssertionError(order)

    return app


async def test_a_pending_step_that_is_not_registered_is_reported(
    store: WorkflowStore, tmp_path: Path
) -> None:
    clock = FakeClock()
    old = release(store, clock, with_ship=True)
    iid = await old.start("o-1", "pack", "o-1")
    record = await old.get(iid)  # packed, now pending on ship: the old
    moved = replace(record, step="ship", version=record.version + 1)  # process
    await store.save(moved, record.version, [])  # stops here
    new = release(store, clock, with_ship=False)
    assert await new.run_until_idle() == 0
    waiting = await new.get(iid)
    assert waiting.status is WorkflowStatus.PENDING
    assert waiting.waiting
    assert waiting.error == (
        "waiting: step 'ship' is not registered on app 'orders' here (steps: pack)"
    )
    history = await new.history(iid)
    assert [(h.step, h.outcome) for h in history][-1] == ("ship", "waiting")
    assert await new.run_until_idle() == 0
    assert len(await new.history(iid)) == len(history)  # reported once

    if isinstance(store, SQLiteWorkflowStore):
        runner = CliRunner()
        db = str(tmp_path / "workflows.db")
        listed = await asyncio.to_thread(
            runner.invoke,
            cli,
            ["--db", db, "workflows", "list"],
            env={"COLUMNS": "200"},
        )
        assert listed.exit_code == 0, listed.output
        assert "waiting" in listed.output
        shown = await asyncio.to_thread(
            runner.invoke,
            cli,
            ["--db", db, "workflows", "show", iid],
            env={"COLUMNS": "200"},
        )
        assert "waiting: step 'ship' is not registered" in shown.output

    assert await old.run_until_idle() == 1
    done = await old.get(iid)
    assert done.status is WorkflowStatus.SUCCEEDED
    assert done.error is None
    assert done.state == {"shipped": "o-1"}
