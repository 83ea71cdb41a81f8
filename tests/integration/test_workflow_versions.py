"""A workflow instance pending on a step the next release no longer
registers is reported waiting (status and reason), never silently pending;
a process that has the step runs it and clears the reason."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from sagakit.adapters.store import Database
from sagakit.cli.main import app as cli
from sagakit.errors import DefinitionError, StateError
from sagakit.ports.workflow_store import WorkflowStatus, WorkflowStore
from sagakit.testing import FakeClock
from sagakit.workflow import WorkflowApp


@pytest.fixture
def store(sql_database: Database) -> WorkflowStore:
    assert sql_database.workflows is not None
    return sql_database.workflows


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
    store: WorkflowStore, sql_database: Database
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

    if not sql_database.url.startswith("postgres"):
        runner = CliRunner()
        db = sql_database.url
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


# -- versions of an app --------------------------------------------------------
#
# The scenario for workflow apps: release 1 runs a -> b -> c and an
# instance's worker dies while b runs; release 2 registers x -> a -> b2 -> c as
# version 2. A worker of release 2 alone never runs the old instance (it is
# reported waiting); one that keeps version 1 beside version 2 finishes it on
# version 1's steps, while new instances start on version 2.

Ran = list[tuple[int, str]]


def chain(
    store: WorkflowStore,
    clock: FakeClock,
    ran: Ran,
    version: int,
    steps: list[str],
    *previous: WorkflowApp,
    chain: bool = True,
) -> WorkflowApp:
    """An app whose steps run one after the other, each noting (version, step)."""
    app = WorkflowApp(
        "orders",
        store,
        clock=clock,
        lease=5.0,
        version=version,
        previous=previous,
        chain=chain,
    )
    for here, after in zip(steps, [*steps[1:], None], strict=True):
        app.step(link(app, ran, here, after))
    return app


def link(app: WorkflowApp, ran: Ran, name: str, after: str | None) -> Any:
    async def step(order: str) -> Any:
        ran.append((app.version, name))
        return None if after is None else app.steps[after](order)

    step.__name__ = name
    return step


def release_1(
    store: WorkflowStore, clock: FakeClock, ran: Ran, *, chain_steps: bool = True
) -> WorkflowApp:
    return chain(store, clock, ran, 1, ["a", "b", "c"], chain=chain_steps)


def release_2(
    store: WorkflowStore, clock: FakeClock, ran: Ran, *previous: WorkflowApp
) -> WorkflowApp:
    return chain(store, clock, ran, 2, ["x", "a", "b2", "c"], *previous)


async def killed_in_b(store: WorkflowStore, clock: FakeClock, ran: Ran) -> str:
    """An instance of release 1 whose worker died while it ran ``b``."""
    old = release_1(store, clock, ran, chain_steps=False)
    iid = await old.start("o-1", "a", "o-1")
    assert await old.run_once() == 1  # a ran; b is due, for any worker
    (taken,) = await store.claim(
        "orders", "dead", ["b"], now=clock.now(), lease=5.0, version=1
    )
    assert taken.status is WorkflowStatus.RUNNING
    clock.advance(10)  # its lease ran out: nobody renews it
    return iid


async def test_a_release_without_the_instance_version_reports_it_waiting(
    store: WorkflowStore, sql_database: Database
) -> None:
    clock, ran = FakeClock(), []
    iid = await killed_in_b(store, clock, ran)
    # pending on a step v2 has too (by name): only its version keeps it apart
    on_c = await release_1(store, clock, ran).start("o-3", "c", "o-3")
    new = release_2(store, clock, ran)
    assert await new.run_until_idle() == 0
    assert (await new.get(on_c)).error == (
        "waiting: needs orders v1, not registered here (have v2)"
    )
    waiting = await new.get(iid)
    reason = "needs orders v1, not registered here (have v2)"
    assert (waiting.status, waiting.waiting) == (WorkflowStatus.PENDING, True)
    assert waiting.error == f"waiting: {reason}"
    assert (waiting.step, waiting.definition_version, waiting.owner) == ("b", 1, None)
    history = await new.history(iid)
    assert [(h.step, h.outcome) for h in history][-1] == ("b", "waiting")
    assert await new.run_until_idle() == 0
    assert len(await new.history(iid)) == len(history)  # reported once
    assert ran == [(1, "a")]  # x and b2 never ran on the old instance

    fresh = await new.start("o-2", "x", "o-2")
    started = await new.get(fresh)
    assert (started.definition_version, started.fingerprint) == (2, new.fingerprint)
    assert await new.run_until_idle() == 4
    assert ran[1:] == [(2, "x"), (2, "a"), (2, "b2"), (2, "c")]

    if not sql_database.url.startswith("postgres"):
        db = sql_database.url
        listed = await cli_output(db, "workflows", "list")
        row = next(line for line in listed.splitlines() if "o-1" in line)
        assert "waiting" in row
        assert "orders v2" in next(x for x in listed.splitlines() if "o-2" in x)
        shown = await cli_output(db, "workflows", "show", iid)
        assert reason in shown
        assert f"orders v1 (shape {waiting.fingerprint})" in shown

    both = release_2(store, clock, ran, release_1(store, clock, ran))
    del ran[:]
    assert await both.run_until_idle() == 3
    assert sorted(ran) == [(1, "b"), (1, "c"), (1, "c")]
    done = await both.get(iid)
    assert (done.status, done.error) == (WorkflowStatus.SUCCEEDED, None)


async def cli_output(db: str, *args: str) -> str:
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["--db", db, *args], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    return result.output


async def test_a_changed_shape_under_the_same_version_is_reported_not_run(
    store: WorkflowStore,
) -> None:
    clock, ran = FakeClock(), []
    old = release_1(store, clock, ran)
    iid = await old.start("o-1", "a", "o-1")
    changed = WorkflowApp("orders", store, clock=clock)

    class Order(BaseModel):
        id: str

    @changed.step
    async def a(order: Order) -> None:
        raise AssertionError(order)

    for name in ("b", "c"):
        changed.step(_named(name))
    assert changed.fingerprint != old.fingerprint
    assert await changed.run_until_idle() == 0
    waiting = await changed.get(iid)
    assert waiting.error == (
        "waiting: orders v1 changed shape since this instance started "
        f"(fingerprint {old.fingerprint}, registered {changed.fingerprint})"
    )
    assert await old.run_until_idle() == 3
    assert ran == [(1, "a"), (1, "b"), (1, "c")]


def _named(name: str) -> Any:
    async def step(order: str) -> None:
        raise AssertionError(order)

    step.__name__ = name
    return step


async def test_an_event_reaches_an_instance_of_an_older_version(
    store: WorkflowStore,
) -> None:
    clock, ran = FakeClock(), []
    old = WorkflowApp("orders", store, clock=clock)

    @old.step
    async def pack(order: str) -> Any:
        return confirm.wait(order)

    @old.step
    async def confirm(answer: str) -> None:
        ran.append((1, answer))

    iid = await old.start("o-1", "pack", "o-1")
    await old.run_until_idle()
    new = release_2(store, clock, ran)  # lacks v1: delivers, does not run
    await new.call(iid, "confirm", "yes")
    with pytest.raises(StateError, match="pending on step 'confirm', not 'x'"):
        await new.call(iid, "x", "no")
    assert await new.run_until_idle() == 0
    both = release_2(store, clock, ran, old)
    with pytest.raises(DefinitionError, match="'b2' is not registered"):
        await both.call(iid, "b2", "no")  # looked up in v1, the instance's
    assert await both.run_until_idle() == 1
    assert ran == [(1, "yes")]
