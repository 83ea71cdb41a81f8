"""The workflow store contract, as a :class:`~sagakit.workflow.WorkflowApp`
sees it: starting an existing instance again, and how an instance ends (the
value its last step returned, or a :class:`~sagakit.errors.FatalError`).

:class:`~sagakit.testing.contracts.workflow_store.WorkflowStoreContract`
includes it; it needs the same ``store`` and ``peer`` fixtures.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sagakit.errors import FatalError, SagaAlreadyExists, StepFailed
from sagakit.ports.workflow_store import WorkflowStatus, WorkflowStore
from sagakit.testing.clock import FakeClock
from sagakit.workflow import WorkflowApp

ORDERS = "orders"


def orders(store: WorkflowStore, clock: FakeClock, **options: Any) -> WorkflowApp:
    """An app whose first step ``take`` raises ``FatalError`` on the input
    ``"fatal"``, returns an ``object()`` on ``"opaque"`` and otherwise
    calls ``pay``, which ends the instance with a JSON result."""
    app = WorkflowApp(ORDERS, store, clock=clock, **options)

    @app.step
    def take(order: Any) -> Any:
        if order == "fatal":
            raise FatalError("card declined")
        if order == "opaque":
            return object()
        return pay(order)

    @app.step
    def pay(order: Any) -> Any:
        return {"paid": order, "lines": [1, 2.5, "é"], "gift": None}

    return app


class WorkflowAppContract:
    """Start semantics and results of workflow instances, on a store.

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

    async def test_a_returned_value_is_the_result(
        self, store: WorkflowStore, peer: WorkflowStore
    ) -> None:
        app = orders(store, FakeClock())
        await app.start("o1", "take", "o1")
        assert await app.run_until_idle() == 2
        ended = await peer.get(ORDERS, "o1")
        assert ended.status is WorkflowStatus.SUCCEEDED
        assert ended.result == {"paid": "o1", "lines": [1, 2.5, "é"], "gift": None}
        assert (ended.step, ended.input, ended.error) == (None, None, None)
        assert await app.result("o1") == ended.result
        assert (await store.list_workflows())[0].result == ended.result

    async def test_a_fatal_error_fails_the_instance_at_once(
        self, store: WorkflowStore
    ) -> None:
        app = orders(store, FakeClock(), max_attempts=5)
        await app.start("o1", "take", "fatal")
        assert await app.run_until_idle() == 1
        failed = await app.get("o1")
        assert failed.status is WorkflowStatus.FAILED
        assert failed.error == "step take failed: FatalError: card declined"
        assert (failed.step, failed.attempts, failed.result) == ("take", 1, None)
        history = await app.history("o1")
        assert [(h.outcome, h.error) for h in history] == [
            ("started", None),
            ("failed", "FatalError: card declined"),
        ]
        with pytest.raises(StepFailed, match="card declined") as caught:
            await app.result("o1")
        assert (caught.value.saga_id, caught.value.status) == ("o1", "failed")

    async def test_a_result_that_is_not_json_fails_the_instance(
        self, store: WorkflowStore
    ) -> None:
        app = orders(store, FakeClock())
        await app.start("o1", "take", "opaque")
        await app.run_until_idle()
        failed = await app.get("o1")
        assert failed.status is WorkflowStatus.FAILED
        assert failed.attempts == 1  # not retried: retrying cannot fix it
        assert failed.error is not None
        assert "step take: the object it returned, not a step call, is not JSON" in (
            failed.error
        )
