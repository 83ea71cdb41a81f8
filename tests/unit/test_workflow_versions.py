"""Versions of a workflow app: its fingerprint, the previous versions it
runs, and how it shares claims and timers between them (in-memory store)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from sagakit.adapters.store.workflow_memory import InMemoryWorkflowStore
from sagakit.errors import DefinitionError
from sagakit.testing import FakeClock
from sagakit.workflow import WorkflowApp


class Order(BaseModel):
    """An order."""

    id: str


class Described(BaseModel):
    """Another docstring: words are not shape."""

    id: str = Field(description="the order's id")


class Wider(BaseModel):
    id: str
    note: str | None = None


def app_of(
    *steps: Any, name: str = "orders", version: int = 1, **kw: Any
) -> WorkflowApp:
    app = WorkflowApp(name, InMemoryWorkflowStore(), version=version, **kw)
    for fn in steps:
        app.step(fn)
    return app


def step(name: str, input_type: Any = str, body: str = "") -> Any:
    async def fn(input: Any) -> None:
        return None

    fn.__name__ = name
    fn.__annotations__ = {"input": input_type, "return": None}
    fn.__doc__ = body
    return fn


def test_the_fingerprint_is_the_step_names_and_input_schemas() -> None:
    base = app_of(step("a", Order), step("b")).fingerprint
    assert app_of(step("b"), step("a", Order)).fingerprint == base  # any order
    assert app_of(step("a", Order, "docs"), step("b")).fingerprint == base
    assert app_of(step("a", Described), step("b")).fingerprint == base
    assert app_of(step("a", Order), step("b"), max_attempts=9).fingerprint == base
    assert app_of(step("a", Order), step("b"), version=2).fingerprint == base
    for changed in (
        app_of(step("a", Order), step("c")),  # renamed
        app_of(step("a", Order)),  # removed
        app_of(step("a", Order), step("b"), step("c")),  # added
        app_of(step("a", Wider), step("b")),  # another input type
        app_of(step("a", Any), step("b")),  # no input type
    ):
        assert changed.fingerprint != base


def test_registering_a_step_changes_the_fingerprint() -> None:
    app = app_of(step("a"))
    before = app.fingerprint
    app.step(step("b"))
    assert app.fingerprint != before
    assert app.fingerprint == app_of(step("a"), step("b")).fingerprint


@pytest.mark.parametrize("version", [0, -1, True, "2", 1.5])
def test_a_version_is_an_integer_from_1(version: Any) -> None:
    with pytest.raises(DefinitionError, match="workflow orders: version must be"):
        app_of(version=version)


def test_previous_versions_are_older_versions_of_the_same_app() -> None:
    v1 = app_of(step("a"))
    v2 = app_of(step("b"), version=2, previous=[v1])
    v3 = app_of(step("c"), version=3, previous=[v2])
    assert v3.versions == {1: v1, 2: v2, 3: v3}
    assert v3.previous == {1: v1, 2: v2}
    assert app_of(version=3, previous=[v2, v1]).versions[1] is v1
    with pytest.raises(DefinitionError, match="is another app"):
        app_of(version=2, previous=[app_of(name="payments")])
    with pytest.raises(DefinitionError, match="v2 is not older than this app's v2"):
        app_of(version=2, previous=[v2])
    with pytest.raises(DefinitionError, match="v1 is given twice"):
        app_of(version=3, previous=[v1, app_of(step("a"))])
    with pytest.raises(DefinitionError, match="previous takes WorkflowApp objects"):
        app_of(version=2, previous=["v1"])  # type: ignore[list-item]


async def test_versions_take_turns_at_claiming_so_none_starves() -> None:
    clock, store = FakeClock(), InMemoryWorkflowStore()
    ran: list[tuple[int, str]] = []

    def version(number: int, *previous: WorkflowApp) -> WorkflowApp:
        app = WorkflowApp(
            "orders", store, clock=clock, version=number, previous=previous, batch=1
        )

        @app.step
        async def work(order: str) -> None:
            ran.append((number, order))

        return app

    v1 = version(1)
    for n in range(3):
        await v1.start(f"old-{n}", "work", f"old-{n}")
    both = version(2, v1)
    for n in range(3):
        await both.start(f"new-{n}", "work", f"new-{n}")
    assert await both.run_once() == 1
    assert await both.run_once() == 1
    assert sorted(number for number, _ in ran) == [1, 2]
    assert await both.run_until_idle() == 4
    assert sorted(ran) == [(1, f"old-{n}") for n in range(3)] + [
        (2, f"new-{n}") for n in range(3)
    ]


async def test_advance_runs_the_timers_of_every_version() -> None:
    clock, store = FakeClock(), InMemoryWorkflowStore()
    ran: list[tuple[int, float]] = []

    def version(number: int, *previous: WorkflowApp) -> WorkflowApp:
        app = WorkflowApp(
            "orders", store, clock=clock, version=number, previous=previous
        )

        @app.step
        async def first(delay: float) -> Any:
            return later(delay, delay=delay)

        @app.step
        async def later(delay: float) -> None:
            ran.append((number, clock.now()))

        return app

    v1 = version(1)
    await v1.start("old", "first", 30.0)
    both = version(2, v1)
    await both.start("new", "first", 10.0)
    start = clock.now()
    assert await both.advance(60) == 4
    assert ran == [(2, start + 10), (1, start + 30)]
