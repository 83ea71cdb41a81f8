"""The workflow store contract, as a :class:`~sagakit.workflow.WorkflowApp`
sees it: starting an existing instance again.

:class:`~sagakit.testing.contracts.workflow_store.WorkflowStoreContract`
includes it; it needs the same ``store`` and ``peer`` fixtures.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sagakit.errors import SagaAlreadyExists
from sagakit.ports.workflow_store import WorkflowStatus, WorkflowStore
from sagakit.testing.clock import FakeClock
from sagakit.workflow import WorkflowApp

ORDERS = "orders"


def orders(store: WorkflowStore, clock: FakeClock, **options: Any) -> WorkflowApp:
    """An app whose first step ``take`` calls ``pay``, which ends the
    instance."""
    app = WorkflowApp(ORDERS, store, clock=clock, **options)

    @app.step
    def take(order: Any) -> Any:
        return pay(order)

    @app.step
    def pay(order: Any) -> None:
        return None

    return app


class WorkflowAppContract:
    """Start semantics of workflow instances, on a store.

    Subclass it (or ``WorkflowStoreContract``) and provide a ``store``
    fixture returning a fresh, empty store, and ``peer``, a second handle on
    the same data, where there can be one."""

    @pytest.fixture
    def store(self) -> WorkflowStore:
        raise NotImplementedError

    @pytest.fixture
    def peer(self, store: WorkflowStore) -> WorkflowStore:
        return store

    async def test_start_again_with_the_same_call_returns_the_instance(
        self, store: WorkflowStore
    ) -> None:
        app = orders(store, FakeClock())
        assert await app.start("o1", "take", {"n": 1, "to": "x"}) == "o1"
        again = await app.start("o1", "take", {"to": "x", "n": 1}, delay=5)
        assert again == "o1"  # key order and delay aside, the same call
        assert [h.outcome for h in await app.history("o1")] == ["started"]
        await app.run_until_idle()
        assert await app.start("o1", "take", {"n": 1, "to": "x"}) == "o1"
        assert (await app.get("o1")).status is WorkflowStatus.SUCCEEDED

    @pytest.mark.parametrize(
        ("step", "order", "state"),
        [("take", "o2", None), ("pay", "o1", None), ("take", "o1", {"vip": True})],
    )
    async def test_start_again_with_another_call_raises_already_exists(
        self, store: WorkflowStore, step: str, order: str, state: Any
    ) -> None:
        app = orders(store, FakeClock())
        await app.start("o1", "take", "o1")
        before = await app.get("o1")
        with pytest.raises(SagaAlreadyExists) as caught:
            await app.start("o1", step, order, state=state)
        assert (caught.value.saga_id, caught.value.status) == ("o1", "pending")
        assert caught.value.app == ORDERS
        assert str(caught.value).startswith(
            f"workflow {ORDERS}/o1 exists already (status pending), "
            "started with another call"
        )
        assert await app.get("o1") == before
        assert len(await app.history("o1")) == 1

    async def test_concurrent_starts_of_one_id_give_one_instance(
        self, store: WorkflowStore, peer: WorkflowStore
    ) -> None:
        clock = FakeClock()
        apps = [orders(store, clock), orders(peer, clock)]
        outcomes = await asyncio.gather(
            *(apps[n % 2].start("o1", "take", f"order {n}") for n in range(4)),
            return_exceptions=True,
        )
        assert outcomes.count("o1") == 1, outcomes
        refused = [o for o in outcomes if isinstance(o, SagaAlreadyExists)]
        assert len(refused) == 3, outcomes
        assert {(e.saga_id, e.status, e.app) for e in refused} == {
            ("o1", "pending", ORDERS)
        }
        same = await asyncio.gather(
            *(apps[n % 2].start("o2", "take", "same") for n in range(4))
        )
        assert same == ["o2"] * 4
        assert len(await apps[0].history("o2")) == 1
