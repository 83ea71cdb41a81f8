"""Store contract, leases and reply deadlines."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from sagakit import ConcurrencyError, SagaStatus
from sagakit.ports.store import SagaStore
from sagakit.testing.contracts.records import (
    FUTURE,
    PAST,
    StoreFixtures,
    entry,
    make_record,
)


class SagaLeasesContract(StoreFixtures):
    """Claims, renewals and releases (``SagaLeases``), and due deadlines."""

    # -- leases --------------------------------------------------------------
    # "Now" is faked through lease lengths: lease=-1 is already expired.

    async def test_claim_takes_unleased_sagas_oldest_first(
        self, store: SagaStore
    ) -> None:
        await store.create(make_record("new", created=5.0), [])
        await store.create(make_record("old", created=1.0), [])
        await store.create(
            make_record("back", status=SagaStatus.COMPENSATING, created=3.0), []
        )
        claimed = await store.claim("w1", ["order"], lease=60)
        assert [r.saga_id for r in claimed] == ["old", "back", "new"]
        assert [r.version for r in claimed] == [2, 2, 2]
        assert claimed[0].context == {"order_id": "old"}
        assert claimed[1].status is SagaStatus.COMPENSATING
        assert (await store.get("old")).version == 2
        assert await store.claim("w2", ["order"], lease=60) == []

    async def test_claim_honours_limit(self, store: SagaStore) -> None:
        for i in range(5):
            await store.create(make_record(f"s{i}", created=float(i)), [])
        first = await store.claim("w1", ["order"], lease=60, limit=2)
        assert [r.saga_id for r in first] == ["s0", "s1"]
        rest = await store.claim("w2", ["order"], lease=60, limit=10)
        assert [r.saga_id for r in rest] == ["s2", "s3", "s4"]

    async def test_expired_lease_is_claimable_fresh_one_is_not(
        self, store: SagaStore
    ) -> None:
        await store.create(make_record("lapsed"), [], owner="w1", lease=-1)
        await store.create(make_record("held"), [], owner="w1", lease=60)
        claimed = await store.claim("w2", ["order"], lease=60)
        assert [r.saga_id for r in claimed] == ["lapsed"]

    async def test_claim_takes_fresh_leases_of_gone_owners(
        self, store: SagaStore
    ) -> None:
        await store.create(make_record("dead", created=1.0), [], owner="w1", lease=60)
        await store.create(make_record("live", created=2.0), [], owner="w2", lease=60)
        assert await store.claim("w3", ["order"], lease=60, gone=["w9"]) == []
        claimed = await store.claim("w3", ["order"], lease=60, gone=["w1"])
        assert [(r.saga_id, r.version) for r in claimed] == [("dead", 2)]
        assert await store.claim("w4", ["order"], lease=60, gone=["w1"]) == []

    async def test_lease_holders_names_each_owner_of_unfinished_sagas_once(
        self, store: SagaStore
    ) -> None:
        assert await store.lease_holders(["order"]) == []
        await store.create(make_record("a"), [], owner="w1", lease=60)
        await store.create(make_record("b"), [], owner="w1", lease=-1)
        await store.create(make_record("c"), [], owner="w2", lease=60)
        await store.create(make_record("d"), [])  # unowned
        done = make_record("e", status=SagaStatus.SUCCEEDED)
        await store.create(done, [], owner="w3", lease=60)
        assert sorted(await store.lease_holders(["order"])) == ["w1", "w2"]
        assert await store.lease_holders(["other"]) == []

    async def test_create_without_lease_is_claimable(self, store: SagaStore) -> None:
        await store.create(make_record("s1"), [], owner="w1")  # no lease: unowned
        assert [r.saga_id for r in await store.claim("w2", ["order"], lease=60)] == [
            "s1"
        ]

    async def test_claim_bumps_version_so_previous_owner_cannot_save(
        self, store: SagaStore
    ) -> None:
        record = make_record("s1")
        await store.create(record, [], owner="w1", lease=-1)
        (taken,) = await store.claim("w2", ["order"], lease=60)
        assert taken.version == 2
        with pytest.raises(ConcurrencyError, match="s1"):
            await store.save(replace(record, version=2), 1, [entry("s1", "late")])
        await store.save(replace(taken, version=3), 2, [entry("s1", "mine")])
        assert (await store.get("s1")).version == 3
        assert [h.outcome for h in await store.history("s1")] == ["mine"]

    async def test_save_refreshes_the_lease_when_given(self, store: SagaStore) -> None:
        record = make_record("s1")
        await store.create(record, [], owner="w1", lease=60)
        await store.save(replace(record, version=2), 1, [], owner="w1", lease=-1)
        (taken,) = await store.claim("w2", ["order"], lease=60)
        await store.save(replace(taken, version=4), 3, [], owner="w2", lease=60)
        assert await store.claim("w3", ["order"], lease=60) == []

    async def test_save_without_owner_keeps_the_lease(self, store: SagaStore) -> None:
        record = make_record("s1")
        await store.create(record, [], owner="w1", lease=60)
        await store.save(replace(record, version=2), 1, [])
        assert await store.claim("w2", ["order"], lease=60) == []

    async def test_terminal_sagas_are_never_claimed(self, store: SagaStore) -> None:
        for i, status in enumerate(
            [
                SagaStatus.SUCCEEDED,
                SagaStatus.COMPENSATED,
                SagaStatus.COMPENSATION_FAILED,
                SagaStatus.FAILED,
            ]
        ):
            await store.create(make_record(f"t{i}", status=status), [])
        await store.create(
            make_record("lapsed", status=SagaStatus.FAILED), [], owner="w1", lease=-1
        )
        assert await store.claim("w1", ["order"], lease=60) == []

    async def test_claim_filters_by_saga_name(self, store: SagaStore) -> None:
        await store.create(make_record("o1", name="order"), [])
        await store.create(make_record("r1", name="refund"), [])
        await store.create(make_record("x1", name="other"), [])
        assert await store.claim("w1", [], lease=60) == []
        refunds = await store.claim("w1", ["refund"], lease=60)
        assert [r.saga_id for r in refunds] == ["r1"]
        both = await store.claim("w2", {"order", "other"}, lease=60)
        assert sorted(r.saga_id for r in both) == ["o1", "x1"]

    async def test_concurrent_claimers_never_get_the_same_saga(
        self, store: SagaStore, peer: SagaStore
    ) -> None:
        ids = [f"s{i:02}" for i in range(30)]
        for i, saga_id in enumerate(ids):
            await store.create(make_record(saga_id, created=float(i)), [])

        async def drain(handle: SagaStore, owner: str) -> list[str]:
            got: list[str] = []
            while batch := await handle.claim(owner, ["order"], lease=60, limit=3):
                got.extend(r.saga_id for r in batch)
                await asyncio.sleep(0)
            return got

        first, second = await asyncio.gather(drain(store, "w1"), drain(peer, "w2"))
        assert not set(first) & set(second)
        assert sorted(first + second) == ids
        assert {r.version for r in await store.list_sagas(limit=100)} == {2}

    async def test_renew_only_by_the_owner(self, store: SagaStore) -> None:
        await store.create(make_record("s1"), [])
        await store.create(make_record("s2"), [])
        await store.create(
            make_record("done", status=SagaStatus.SUCCEEDED), [], owner="w1", lease=60
        )
        await store.claim("w1", ["order"], lease=60)
        assert await store.renew("w2", ["s1", "s2"], lease=60) == []
        assert await store.renew("w1", ["s2", "ghost", "s1", "done"], lease=60) == [
            "s2",
            "s1",
        ]
        assert await store.renew("w1", [], lease=60) == []
        # w1 lets s1 lapse; w2 takes it, and w1 can no longer renew it.
        assert await store.renew("w1", ["s1"], lease=-1) == ["s1"]
        assert [r.saga_id for r in await store.claim("w2", ["order"], lease=60)] == [
            "s1"
        ]
        assert await store.renew("w1", ["s1", "s2"], lease=60) == ["s2"]

    async def test_release_makes_sagas_claimable_at_once(
        self, store: SagaStore
    ) -> None:
        await store.create(make_record("s1", created=1.0), [])
        await store.create(make_record("s2", created=2.0), [])
        await store.claim("w1", ["order"], lease=60)
        assert await store.claim("w2", ["order"], lease=60) == []
        await store.release("w2", ["s1", "s2"])  # not w2's to release
        assert await store.claim("w2", ["order"], lease=60) == []
        await store.release("w1", ["s1"])
        await store.release("w1", [])
        claimed = await store.claim("w2", ["order"], lease=60)
        assert [(r.saga_id, r.version) for r in claimed] == [("s1", 3)]
        assert await store.renew("w1", ["s1", "s2"], lease=60) == ["s2"]

    # -- deadlines -----------------------------------------------------------

    async def test_deadline_round_trips(self, store: SagaStore) -> None:
        record = make_record("s1", deadline=1234.5)
        await store.create(record, [])
        assert (await store.get("s1")).deadline == 1234.5
        await store.save(replace(record, version=2, deadline=None), 1, [])
        assert (await store.get("s1")).deadline is None
        await store.save(replace(record, version=3, deadline=99.25), 2, [])
        assert (await store.get("s1")).deadline == 99.25
        (listed,) = await store.list_sagas()
        assert listed.deadline == 99.25
        await store.create(make_record("s2"), [])
        assert (await store.get("s2")).deadline is None

    async def test_claim_returns_the_deadline(self, store: SagaStore) -> None:
        await store.create(make_record("s1", deadline=50.0), [])
        (claimed,) = await store.claim("w1", ["order"], lease=60)
        assert claimed.deadline == 50.0

    async def test_due_deadlines_filters_and_orders(self, store: SagaStore) -> None:
        await store.create(make_record("late", deadline=PAST + 2), [])
        await store.create(make_record("later", deadline=PAST + 1), [])
        await store.create(
            make_record(
                "back", status=SagaStatus.COMPENSATING, deadline=PAST + 3, created=1.0
            ),
            [],
        )
        await store.create(make_record("future", deadline=FUTURE), [])
        await store.create(make_record("none"), [])
        await store.create(
            make_record("done", status=SagaStatus.SUCCEEDED, deadline=PAST), []
        )
        await store.create(
            make_record("failed", status=SagaStatus.FAILED, deadline=PAST), []
        )
        await store.create(make_record("refund", name="refund", deadline=PAST), [])
        assert await store.due_deadlines(["order"]) == ["later", "late", "back"]
        assert await store.due_deadlines(["order"], limit=2) == ["later", "late"]
        assert await store.due_deadlines(["refund", "order"]) == [
            "refund",
            "later",
            "late",
            "back",
        ]
        assert await store.due_deadlines(["other"]) == []
        assert await store.due_deadlines([]) == []

    async def test_a_saved_deadline_is_seen_by_due_deadlines(
        self, store: SagaStore
    ) -> None:
        record = make_record("s1", deadline=FUTURE)
        await store.create(record, [])
        assert await store.due_deadlines(["order"]) == []
        await store.save(replace(record, version=2, deadline=PAST), 1, [])
        assert await store.due_deadlines(["order"]) == ["s1"]
        done = replace(record, version=3, status=SagaStatus.SUCCEEDED, deadline=PAST)
        await store.save(done, 2, [])
        assert await store.due_deadlines(["order"]) == []
