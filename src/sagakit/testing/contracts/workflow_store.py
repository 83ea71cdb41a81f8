"""The workflow store contract: written once, subclassed per adapter. It
includes :class:`~sagakit.testing.contracts.workflow_app.WorkflowAppContract`
(starts and results, through a ``WorkflowApp``) and
:class:`~sagakit.testing.contracts.workflow_claims.WorkflowClaimContract`
(batch claims, leases and the next due time)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from sagakit.errors import ConcurrencyError, SagaNotFound
from sagakit.ports.workflow_store import (
    WorkflowRecord,
    WorkflowStatus,
    WorkflowStore,
)
from sagakit.testing.contracts.definitions import WorkflowVersionsContract
from sagakit.testing.contracts.workflow_app import WorkflowAppContract
from sagakit.testing.contracts.workflow_claims import WorkflowClaimContract
from sagakit.testing.contracts.workflow_records import APP, STEPS, line, make

__all__ = ["APP", "STEPS", "WorkflowStoreContract", "line", "make"]


class WorkflowStoreContract(
    WorkflowAppContract, WorkflowClaimContract, WorkflowVersionsContract
):
    """Subclass and provide a ``store`` fixture returning a fresh, empty store
    (and ``peer``, a second handle on the same data, where there can be one)."""

    async def test_create_then_get_round_trips(self, store: WorkflowStore) -> None:
        record = make("w1", state={"tries": 1, "seen": [1, "a"]})
        got, created = await store.create(record, [line("w1", "started")])
        assert created
        assert got == record
        assert await store.get(APP, "w1") == record

    async def test_create_is_idempotent_per_app(self, store: WorkflowStore) -> None:
        await store.create(make("w1"), [line("w1", "started")])
        existing, created = await store.create(
            make("w1", step="credit"), [line("w1", "started")]
        )
        assert not created
        assert existing == make("w1")
        assert len(await store.history(APP, "w1")) == 1
        _, other = await store.create(make("w1", app="refunds"), [])
        assert other

    async def test_concurrent_creates_of_one_instance_create_it_once(
        self, store: WorkflowStore, peer: WorkflowStore
    ) -> None:
        outcomes = await asyncio.gather(
            *(
                (store if n % 2 else peer).create(
                    make("w1", input={"n": n}), [line("w1", f"by {n}")]
                )
                for n in range(4)
            )
        )
        assert [created for _, created in outcomes].count(True) == 1
        (winner,) = [record for record, created in outcomes if created]
        assert all(record == winner for record, _ in outcomes)
        assert [h.outcome for h in await store.history(APP, "w1")] == [
            f"by {winner.input['n']}"
        ]

    async def test_result_and_start_digest_round_trip(
        self, store: WorkflowStore
    ) -> None:
        started = replace(make("w1"), start_digest="d1")
        await store.create(started, [])
        assert await store.get(APP, "w1") == started
        ended = replace(
            started,
            status=WorkflowStatus.SUCCEEDED,
            step=None,
            input=None,
            version=2,
            result={"paid": [1, 2.5, "é"], "none": None},
            start_digest="forged",  # written once, by create
        )
        await store.save(ended, 1, [])
        got = await store.get(APP, "w1")
        assert got == replace(ended, start_digest="d1")
        assert (await store.list_workflows())[0] == got
        for value in ("text", 0, False, [None]):
            again = replace(got, version=got.version + 1, result=value)
            await store.save(again, got.version, [])
            got = await store.get(APP, "w1")
            assert got.result == value

    async def test_get_unknown_raises_not_found(self, store: WorkflowStore) -> None:
        with pytest.raises(SagaNotFound, match="nope"):
            await store.get(APP, "nope")

    async def test_save_replaces_and_appends_history(
        self, store: WorkflowStore
    ) -> None:
        await store.create(make("w1"), [line("w1", "started")])
        saved = replace(
            make("w1"),
            step="credit",
            input=[1, 2],
            state={"tries": 2},
            version=2,
            transitions=1,
            error="boom",
            updated_at=60.0,
        )
        await store.save(saved, 1, [line("w1", "succeeded", detail={"next": "credit"})])
        assert await store.get(APP, "w1") == saved
        history = await store.history(APP, "w1")
        assert [h.outcome for h in history] == ["started", "succeeded"]
        assert history[1].detail == {"next": "credit"}

    async def test_stale_save_changes_nothing(self, store: WorkflowStore) -> None:
        await store.create(make("w1"), [])
        with pytest.raises(ConcurrencyError, match="w1"):
            await store.save(
                replace(make("w1"), version=3, step="credit"), 2, [line("w1", "x")]
            )
        assert (await store.get(APP, "w1")).step == "debit"
        assert await store.history(APP, "w1") == []

    async def test_save_unknown_raises_not_found(self, store: WorkflowStore) -> None:
        with pytest.raises(SagaNotFound):
            await store.save(make("ghost"), 1, [])

    async def test_claim_takes_due_instances_earliest_first(
        self, store: WorkflowStore
    ) -> None:
        await store.create(make("late", due_at=150.0), [])
        await store.create(make("early", due_at=90.0), [])
        await store.create(make("future", due_at=500.0), [])
        await store.create(make("waiting", due_at=None), [])
        claimed = await store.claim(APP, "w", STEPS, now=200.0, lease=10.0)
        assert [r.instance_id for r in claimed] == ["early", "late"]
        first = claimed[0]
        assert first.status is WorkflowStatus.RUNNING
        assert first.owner == "w"
        assert first.lease_until == 210.0
        assert first.version == 2
        assert first.attempts == 1
        assert await store.get(APP, "early") == first
        assert await store.claim(APP, "w", STEPS, now=200.0, lease=10.0) == []

    async def test_claim_filters_app_steps_and_limit(
        self, store: WorkflowStore
    ) -> None:
        await store.create(make("a", step="unknown"), [])
        await store.create(make("b", app="other"), [])
        for i in range(3):
            await store.create(make(f"c{i}", step="credit"), [])
        claimed = await store.claim(APP, "w", STEPS, now=200.0, lease=10.0, limit=2)
        assert [r.instance_id for r in claimed] == ["c0", "c1"]

    async def test_expired_lease_is_claimed_again(self, store: WorkflowStore) -> None:
        await store.create(make("w1"), [])
        (first,) = await store.claim(APP, "dead", STEPS, now=200.0, lease=10.0)
        assert await store.claim(APP, "w2", STEPS, now=205.0, lease=10.0) == []
        (second,) = await store.claim(APP, "w2", STEPS, now=211.0, lease=10.0)
        assert second.owner == "w2"
        assert second.attempts == 2
        assert second.version == first.version + 1
        with pytest.raises(ConcurrencyError):  # the dead worker cannot commit
            await store.save(
                replace(first, version=first.version + 1), first.version, []
            )

    async def test_terminal_instances_are_never_claimed(
        self, store: WorkflowStore
    ) -> None:
        await store.create(make("done", status=WorkflowStatus.SUCCEEDED), [])
        await store.create(make("bad", status=WorkflowStatus.FAILED), [])
        assert await store.claim(APP, "w", STEPS, now=1e9, lease=10.0) == []
        assert await store.unfinished(APP) == 0

    async def test_renew_only_by_the_owner(self, store: WorkflowStore) -> None:
        await store.create(make("w1"), [])
        await store.claim(APP, "w", STEPS, now=200.0, lease=10.0)
        assert not await store.renew(APP, "other", "w1", now=205.0, lease=10.0)
        assert await store.renew(APP, "w", "w1", now=205.0, lease=10.0)
        assert (await store.get(APP, "w1")).lease_until == 215.0
        assert await store.claim(APP, "x", STEPS, now=212.0, lease=10.0) == []

    async def test_next_due_and_unfinished(self, store: WorkflowStore) -> None:
        assert await store.next_due(APP, STEPS) is None
        await store.create(make("a", due_at=300.0), [])
        await store.create(make("b", due_at=120.0), [])
        await store.create(make("c", due_at=None), [])
        await store.create(make("d", due_at=10.0, step="unknown"), [])
        assert await store.next_due(APP, STEPS) == 120.0
        await store.claim(APP, "w", STEPS, now=200.0, lease=500.0)
        assert await store.next_due(APP, STEPS) == 300.0  # b is leased to 700
        assert await store.unfinished(APP) == 4

    async def test_concurrent_claimers_never_get_the_same_instance(
        self, store: WorkflowStore, peer: WorkflowStore
    ) -> None:
        for i in range(40):
            await store.create(make(f"w{i:02}"), [])
        batches = await asyncio.gather(
            *(
                (store if n % 2 else peer).claim(
                    APP, f"worker-{n}", STEPS, now=200.0, lease=10.0, limit=7
                )
                for n in range(8)
            )
        )
        ids = [r.instance_id for batch in batches for r in batch]
        assert len(ids) == len(set(ids)) == 40

    # -- inspection (sagakit workflows list / show) -------------------------

    async def _fill(self, store: WorkflowStore) -> None:
        """Five instances of two apps, created at 10..50 (b4 last)."""
        rows = [
            ("a1", APP, WorkflowStatus.SUCCEEDED, 10.0),
            ("a2", APP, WorkflowStatus.PENDING, 20.0),
            ("b1", "refunds", WorkflowStatus.FAILED, 30.0),
            ("a3", APP, WorkflowStatus.PENDING, 40.0),
            ("b4", "refunds", WorkflowStatus.PENDING, 50.0),
        ]
        for instance_id, app, status, created in rows:
            record = replace(
                make(instance_id, app=app, status=status),
                created_at=created,
                updated_at=created + 1,
            )
            await store.create(record, [line(instance_id, "started", app=app)])

    @staticmethod
    def _ids(records: list[WorkflowRecord]) -> list[str]:
        return [r.instance_id for r in records]

    async def test_list_workflows_newest_first(self, store: WorkflowStore) -> None:
        assert await store.list_workflows() == []
        await self._fill(store)
        listed = await store.list_workflows()
        assert self._ids(listed) == ["b4", "a3", "b1", "a2", "a1"]
        assert listed[-1] == await store.get(APP, "a1")
        assert self._ids(await store.list_workflows(limit=2)) == ["b4", "a3"]

    async def test_list_workflows_filters(self, store: WorkflowStore) -> None:
        await self._fill(store)
        pending = await store.list_workflows(status=WorkflowStatus.PENDING)
        assert self._ids(pending) == ["b4", "a3", "a2"]
        mine = await store.list_workflows(app=APP, status=WorkflowStatus.PENDING)
        assert self._ids(mine) == ["a3", "a2"]
        assert self._ids(await store.list_workflows(app="refunds")) == ["b4", "b1"]
        older = await store.list_workflows(created_before=30.0)
        assert self._ids(older) == ["a2", "a1"]  # strictly before
        assert await store.list_workflows(app="nope") == []

    async def test_list_workflows_breaks_ties_by_id_then_app(
        self, store: WorkflowStore
    ) -> None:
        for instance_id, app in (("x1", "b"), ("x2", "a"), ("x1", "a")):
            await store.create(make(instance_id, app=app), [])
        listed = await store.list_workflows()  # all created at 50
        assert [(r.instance_id, r.app) for r in listed] == [
            ("x2", "a"),
            ("x1", "b"),
            ("x1", "a"),
        ]

    async def test_count_workflows_by_status(self, store: WorkflowStore) -> None:
        assert await store.count_workflows_by_status() == {}
        await self._fill(store)
        assert await store.count_workflows_by_status() == {
            WorkflowStatus.PENDING: 3,
            WorkflowStatus.SUCCEEDED: 1,
            WorkflowStatus.FAILED: 1,
        }
        assert await store.count_workflows_by_status("refunds") == {
            WorkflowStatus.PENDING: 1,
            WorkflowStatus.FAILED: 1,
        }
        assert await store.count_workflows_by_status("nope") == {}

    async def test_ids_with_prefix(self, store: WorkflowStore) -> None:
        for instance_id, app in (
            ("abc1", "b"),
            ("abc1", "a"),
            ("abc2", "a"),
            ("abd", "a"),
            ("xabc", "a"),
        ):
            await store.create(make(instance_id, app=app), [])
        assert await store.ids_with_prefix("abc") == [
            ("a", "abc1"),
            ("b", "abc1"),
            ("a", "abc2"),
        ]
        assert await store.ids_with_prefix("abc", limit=2) == [
            ("a", "abc1"),
            ("b", "abc1"),
        ]
        assert await store.ids_with_prefix("abc", app="b") == [("b", "abc1")]
        assert await store.ids_with_prefix("abd") == [("a", "abd")]
        assert await store.ids_with_prefix("zz") == []

    async def test_ids_with_prefix_takes_wildcards_literally(
        self, store: WorkflowStore
    ) -> None:
        await store.create(make("a%b_c"), [])
        await store.create(make("axbyc"), [])
        assert await store.ids_with_prefix("a%") == [(APP, "a%b_c")]
        assert await store.ids_with_prefix("a_") == []
        assert await store.ids_with_prefix("%") == []
