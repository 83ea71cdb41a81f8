"""The workflow store contract for batches and the next due time: leases
hold across batch claims, a lease ending now is not yet over, versions are
claimed apart, instances waiting for an event are never due, and saves
committed together (``save_many``, where a store has it) each do what they
would do alone.

:class:`~sagakit.testing.contracts.workflow_store.WorkflowStoreContract`
includes it; it needs the same ``store`` fixture.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from sagakit.errors import ConcurrencyError, SagaNotFound
from sagakit.ports.workflow_store import (
    WorkflowSave,
    WorkflowSaveMany,
    WorkflowStatus,
    WorkflowStore,
)
from sagakit.testing.contracts.workflow_records import APP, STEPS, line, make


class WorkflowClaimContract:
    """Batch claims and ``next_due``, on the ``store`` fixture."""

    async def test_a_batch_claim_respects_leases(self, store: WorkflowStore) -> None:
        for i in range(30):
            await store.create(make(f"w{i:02}", due_at=100.0 + i), [])
        first = await store.claim(APP, "w1", STEPS, now=200.0, lease=10.0, limit=20)
        assert [r.instance_id for r in first] == [f"w{i:02}" for i in range(20)]
        rest = await store.claim(APP, "w2", STEPS, now=205.0, lease=10.0, limit=100)
        assert [r.instance_id for r in rest] == [f"w{i:02}" for i in range(20, 30)]
        assert await store.claim(APP, "w3", STEPS, now=209.0, lease=10.0) == []
        again = await store.claim(APP, "w3", STEPS, now=211.0, lease=10.0, limit=100)
        assert [r.instance_id for r in again] == [r.instance_id for r in first]
        assert {(r.owner, r.attempts) for r in again} == {("w3", 2)}
        stale = first[0]
        with pytest.raises(ConcurrencyError):  # w1 lost them all
            await store.save(
                replace(stale, version=stale.version + 1), stale.version, []
            )

    async def test_a_lease_ending_now_is_not_over_yet(
        self, store: WorkflowStore
    ) -> None:
        await store.create(make("w1"), [])
        await store.claim(APP, "w", STEPS, now=200.0, lease=10.0)
        assert await store.next_due(APP, STEPS) == 210.0
        assert await store.claim(APP, "x", STEPS, now=210.0, lease=10.0) == []
        (taken,) = await store.claim(APP, "x", STEPS, now=210.5, lease=10.0)
        assert taken.owner == "x"

    async def test_versions_are_claimed_apart(self, store: WorkflowStore) -> None:
        for version, due in ((1, 150.0), (2, 120.0), (2, 130.0)):
            record = replace(
                make(f"v{version}-{due:.0f}", due_at=due), definition_version=version
            )
            await store.create(record, [])
        assert await store.next_due(APP, STEPS, version=1) == 150.0
        assert await store.next_due(APP, STEPS, version=2) == 120.0
        assert await store.next_due(APP, STEPS, version=3) is None
        assert await store.next_due(APP, STEPS) == 120.0
        one = await store.claim(APP, "w", STEPS, now=200.0, lease=10.0, version=1)
        assert [r.instance_id for r in one] == ["v1-150"]
        await store.create(replace(make("v1-140", due_at=140.0)), [])
        every = await store.claim(APP, "w", STEPS, now=200.0, lease=10.0)
        assert [r.instance_id for r in every] == ["v2-120", "v2-130", "v1-140"]

    async def test_instances_waiting_for_an_event_are_never_due(
        self, store: WorkflowStore
    ) -> None:
        for i in range(20):
            await store.create(make(f"event-{i:02}", due_at=None), [])
        assert await store.next_due(APP, STEPS, version=1) is None
        await store.create(make("timer", due_at=300.0), [])
        assert await store.next_due(APP, STEPS, version=1) == 300.0
        assert await store.next_due(APP, STEPS) == 300.0
        claimed = await store.claim(APP, "w", STEPS, now=1e9, lease=10.0, version=1)
        assert [r.instance_id for r in claimed] == ["timer"]

    async def test_saves_committed_together_each_do_what_they_would_alone(
        self, store: WorkflowStore
    ) -> None:
        if not isinstance(store, WorkflowSaveMany):
            pytest.skip(f"{type(store).__name__} has no save_many")
        for instance_id in ("w1", "w2"):
            await store.create(make(instance_id), [line(instance_id, "started")])
        claimed = await store.claim(APP, "w", STEPS, now=200.0, lease=10.0)
        ended = [
            replace(r, status=WorkflowStatus.SUCCEEDED, version=r.version + 1)
            for r in claimed
        ]
        done = await store.save_many(
            [
                WorkflowSave(ended[0], claimed[0].version, [line("w1", "ended")]),
                WorkflowSave(ended[1], 1, [line("w2", "stale")]),
                WorkflowSave(make("ghost"), 1, [line("ghost", "lost")]),
            ]
        )
        assert done[0] is None
        assert isinstance(done[1], ConcurrencyError)
        assert "w2" in str(done[1])
        assert isinstance(done[2], SagaNotFound)
        assert await store.get(APP, "w1") == ended[0]
        assert await store.get(APP, "w2") == claimed[1]
        assert [h.outcome for h in await store.history(APP, "w1")] == [
            "started",
            "ended",
        ]
        assert [h.outcome for h in await store.history(APP, "w2")] == ["started"]
        with pytest.raises(SagaNotFound):
            await store.get(APP, "ghost")
