"""A process that dies at each boundary between a parent and its child, and
the next process that recovers both (on SQLite, in-process: the death is
the store refusing everything from a chosen write on; tests/e2e kills real
processes).

The boundaries: the parent committed the step but the child does not exist
yet; the child ended but the parent was not told; the parent committed the
step's compensation but the child was not asked to roll back; the child was
asked but has not rolled back; the child rolled back but the parent was not
told. A crash between two commits leaves no step in flight, so after
recovery every effect happened exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import BaseModel, ConfigDict

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step, SubSaga
from sagakit.engine.state import SagaState, StepStatus
from sagakit.ports.store import SagaRecord, SagaStore


class Died(BaseException):
    """The process died (nothing may catch it and carry on)."""


Boundary = Callable[[str, SagaState, str], bool]
"""(write, the state it writes, before/after) -> the process dies there."""


class Mortal:
    """The store as one process sees it: it dies at the write ``boundary``
    picks, and from then on every call fails."""

    def __init__(self, base: SagaStore, boundary: Boundary) -> None:
        self._base = base
        self._boundary = boundary
        self.died = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._base, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kw: Any) -> Any:
            self._alive()
            return await attr(*args, **kw)

        return call

    def _alive(self) -> None:
        if self.died.is_set():
            raise Died

    def _dies(self, write: str, record: SagaRecord, when: str) -> None:
        self._alive()
        if self._boundary(write, record.state, when):
            self.died.set()
            raise Died(f"{when} {write} of {record.saga_id}")

    async def create(self, record: SagaRecord, history: Any, **kw: Any) -> Any:
        self._dies("create", record, "before")
        out = await self._base.create(record, history, **kw)
        self._dies("create", record, "after")
        return out

    async def save(
        self, record: SagaRecord, expected: int, history: Any, **kw: Any
    ) -> None:
        self._dies("save", record, "before")
        await self._base.save(record, expected, history, **kw)
        self._dies("save", record, "after")


class Order(BaseModel):
    model_config = ConfigDict(frozen=True)

    declined: bool = False
    no_truck: bool = False


def sagas(log: list[str]) -> Saga[Order]:
    def step(name: str) -> Callable[[Order], Any]:
        async def action(ctx: Order) -> str:
            log.append(name)
            if (name, ctx.declined, ctx.no_truck) in (
                ("charge", True, False),
                ("ship", False, True),
            ):
                raise RuntimeError(f"{name} failed")
            return name

        return action

    def undo(name: str) -> Callable[[Order], Any]:
        async def compensate(ctx: Order) -> None:
            log.append(f"undo {name}")

        return compensate

    payment = Saga(
        "payment",
        [
            Step("authorize", step("authorize"), undo("authorize")),
            Step("charge", step("charge"), undo("charge")),
        ],
        context=Order,
    )
    return Saga(
        "order",
        [
            Step("reserve", step("reserve"), undo("reserve")),
            Step("pay", SubSaga(payment)),
            Step("ship", step("ship")),
        ],
        context=Order,
    )


def child(status: SagaStatus) -> Boundary:
    return lambda write, state, when: (
        when == "after" and state.saga_id == "o/pay" and state.status is status
    )


def parent_step(status: StepStatus) -> Boundary:
    return lambda write, state, when: (
        when == "after" and state.saga_id == "o" and state.step("pay").status is status
    )


def not_created(write: str, state: SagaState, when: str) -> bool:
    return write == "create" and state.saga_id == "o/pay" and when == "before"


BOUNDARIES: dict[str, tuple[Order, Boundary]] = {
    "step committed, child not created": (Order(), not_created),
    "child succeeded, parent not told": (Order(), child(SagaStatus.SUCCEEDED)),
    "parent told of the child": (Order(), parent_step(StepStatus.SUCCEEDED)),
    "child failed, parent not told": (
        Order(declined=True),
        child(SagaStatus.COMPENSATED),
    ),
    "compensation committed, child not asked": (
        Order(no_truck=True),
        parent_step(StepStatus.COMPENSATING),
    ),
    "child asked, not rolled back": (
        Order(no_truck=True),
        child(SagaStatus.COMPENSATING),
    ),
    "child rolled back, parent not told": (
        Order(no_truck=True),
        child(SagaStatus.COMPENSATED),
    ),
}

EXPECTED = {
    Order(): (SagaStatus.SUCCEEDED, SagaStatus.SUCCEEDED),
    Order(declined=True): (SagaStatus.COMPENSATED, SagaStatus.COMPENSATED),
    Order(no_truck=True): (SagaStatus.COMPENSATED, SagaStatus.COMPENSATED),
}


@pytest.mark.parametrize("boundary", list(BOUNDARIES))
async def test_a_crash_at_each_boundary_heals_on_recovery(
    tmp_path: Path, boundary: str
) -> None:
    order_ctx, dies_at = BOUNDARIES[boundary]
    base = SQLiteStore(tmp_path / "crash.db")
    log: list[str] = []
    order = sagas(log)
    mortal = Mortal(base, dies_at)
    first = Orchestrator(cast(SagaStore, mortal), [order], worker_id="first")
    await first.start(order, order_ctx, saga_id="o")
    await mortal.died.wait()
    await first.stop_driving(release=False)  # dead: its tasks end with it

    second = Orchestrator(base, [order], worker_id="second")
    recovered = await second.recover()
    assert "o" in recovered or (await base.get("o")).status.terminal
    result = await second.wait("o")
    await second.drain()
    parent_status, child_status = EXPECTED[order_ctx]
    assert result.status is parent_status, result.error
    assert (await base.get("o/pay")).status is child_status
    twice = [e for e, n in collections.Counter(log).items() if n > 1]
    assert not twice, f"applied more than once: {twice} in {log}"
    await second.close()
