"""Store contract, instances: create, save, get, history, listings and
counts (``SagaRepository``, ``SagaQueries``), leases and reply deadlines
(``SagaLeases``)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from sagakit import ConcurrencyError, SagaNotFound, SagaStatus
from sagakit.engine.state import ErrorInfo, StepStatus
from sagakit.errors import SagaAlreadyExists
from sagakit.ports.store import Created, Lease, SagaStore
from sagakit.testing.contracts import records
from sagakit.testing.contracts.records import (
    StoreFixtures,
    commits,
    entry,
    make_record,
    message,
)


class SagaRepositoryContract(StoreFixtures):
    """Instances and their history (``SagaRepository``) and the lookups of
    ``SagaQueries``."""

    async def test_create_then_get_round_trips(self, store: SagaStore) -> None:
        record = make_record(
            "s1", context={"order_id": "s1", "items": [1, 2], "n": 1.5}
        )
        _, created = await store.create(record, [entry("s1", "started")])
        assert created
        got = await store.get("s1")
        assert got.saga_id == "s1"
        assert got.saga_name == "order"
        assert got.status is SagaStatus.RUNNING
        assert got.version == 1
        assert got.context == {"order_id": "s1", "items": [1, 2], "n": 1.5}
        assert got.state == record.state
        assert got.created_at == 100.0

    async def test_get_unknown_raises_not_found(self, store: SagaStore) -> None:
        with pytest.raises(SagaNotFound, match="nope"):
            await store.get("nope")

    async def test_save_bumps_version_and_appends_history(
        self, store: SagaStore
    ) -> None:
        record = make_record("s1")
        await store.create(record, [entry("s1", "started", kind="saga", step=None)])
        state = record.state.with_step("reserve", status=StepStatus.SUCCEEDED, result=7)
        state = replace(state, status=SagaStatus.SUCCEEDED)
        new = replace(record, version=2, state=state, status=SagaStatus.SUCCEEDED)
        await store.save(new, 1, [entry("s1", "succeeded", result={"ref": 7})])
        got = await store.get("s1")
        assert got.version == 2
        assert got.status is SagaStatus.SUCCEEDED
        assert got.state.step("reserve").result == 7
        history = await store.history("s1")
        assert [h.outcome for h in history] == ["started", "succeeded"]
        assert history[1].result == {"ref": 7}
        assert history[1].duration == pytest.approx(0.5)

    async def test_stale_version_is_rejected_and_changes_nothing(
        self, store: SagaStore
    ) -> None:
        record = make_record("s1")
        await store.create(record, [])
        await store.save(replace(record, version=2), 1, [entry("s1", "a")])
        with pytest.raises(ConcurrencyError, match="s1"):
            await store.save(replace(record, version=2), 1, [entry("s1", "b")])
        assert (await store.get("s1")).version == 2
        assert [h.outcome for h in await store.history("s1")] == ["a"]

    async def test_save_unknown_raises_not_found(self, store: SagaStore) -> None:
        with pytest.raises(SagaNotFound):
            await store.save(make_record("ghost"), 1, [])

    async def test_idempotency_key_returns_existing(self, store: SagaStore) -> None:
        _, created = await store.create(make_record("s1", key="k"), [])
        assert created
        again, created_again = await store.create(make_record("s2", key="k"), [])
        assert not created_again
        assert again.saga_id == "s1"
        with pytest.raises(SagaNotFound):
            await store.get("s2")

    async def test_creating_a_taken_id_raises_already_exists(
        self, store: SagaStore
    ) -> None:
        first = await store.create(make_record("s1", context={"n": 1}), [])
        assert first == Created(first.record, True)
        assert first.created
        with pytest.raises(SagaAlreadyExists, match="s1") as caught:
            await store.create(
                make_record("s1", context={"n": 2}),
                [entry("s1", "again")],
                outbox=[message("m1")],
            )
        assert (caught.value.saga_id, caught.value.status) == ("s1", "running")
        assert caught.value.app is None
        assert str(caught.value) == "saga s1 exists already (status running)"
        assert (await store.get("s1")).context == {"n": 1}
        assert await store.history("s1") == []
        assert await store.claim_outbox("relay", lease=60) == []

    async def test_a_taken_id_reports_the_existing_status_whatever_the_key(
        self, store: SagaStore
    ) -> None:
        await store.create(make_record("s1", status=SagaStatus.COMPENSATED), [])
        with pytest.raises(SagaAlreadyExists) as caught:
            await store.create(make_record("s1", key="fresh"), [])
        assert caught.value.status == "compensated"
        _, created = await store.create(make_record("s2", key="fresh"), [])
        assert created  # the refused create did not take the key either

    async def test_concurrent_creates_of_one_id_give_one_instance(
        self, store: SagaStore, peer: SagaStore
    ) -> None:
        outcomes = await asyncio.gather(
            *(
                (store if n % 2 else peer).create(
                    make_record("s1", context={"n": n}), [entry("s1", f"by {n}")]
                )
                for n in range(4)
            ),
            return_exceptions=True,
        )
        created = [o for o in outcomes if isinstance(o, Created)]
        refused = [o for o in outcomes if isinstance(o, SagaAlreadyExists)]
        assert len(created) == 1, outcomes
        assert created[0].created
        assert len(refused) == 3, outcomes
        assert {(e.saga_id, e.status) for e in refused} == {("s1", "running")}
        winner = created[0].record.context["n"]
        assert (await store.get("s1")).context == {"n": winner}
        assert [h.outcome for h in await store.history("s1")] == [f"by {winner}"]

    async def test_idempotency_key_is_per_saga_name(self, store: SagaStore) -> None:
        await store.create(make_record("s1", key="k", name="order"), [])
        other, created = await store.create(
            make_record("s2", key="k", name="refund"), []
        )
        assert created
        assert other.saga_id == "s2"

    async def test_error_info_survives_history(self, store: SagaStore) -> None:
        await store.create(make_record("s1"), [])
        err = ErrorInfo("ValueError", "card declined", "Traceback...")
        await store.save(
            replace(make_record("s1"), version=2), 1, [entry("s1", "failed", error=err)]
        )
        (h,) = await store.history("s1")
        assert h.error == err

    async def test_list_filters_and_orders_newest_first(self, store: SagaStore) -> None:
        await store.create(make_record("a", created=1.0), [])
        await store.create(make_record("b", created=2.0, name="refund"), [])
        await store.create(
            make_record("c", created=3.0, status=SagaStatus.SUCCEEDED), []
        )
        assert [r.saga_id for r in await store.list_sagas()] == ["c", "b", "a"]
        assert [r.saga_id for r in await store.list_sagas(limit=2)] == ["c", "b"]
        running = await store.list_sagas(status=SagaStatus.RUNNING)
        assert [r.saga_id for r in running] == ["b", "a"]
        assert [r.saga_id for r in await store.list_sagas(saga_name="refund")] == ["b"]

    async def test_list_created_before_keeps_older_sagas(
        self, store: SagaStore
    ) -> None:
        await store.create(make_record("a", created=1.0), [])
        await store.create(make_record("b", created=2.0, name="refund"), [])
        await store.create(
            make_record("c", created=3.0, status=SagaStatus.SUCCEEDED), []
        )
        older = await store.list_sagas(created_before=3.0)
        assert [r.saga_id for r in older] == ["b", "a"]  # strictly before
        assert await store.list_sagas(created_before=1.0) == []
        both = await store.list_sagas(created_before=2.5, saga_name="refund")
        assert [r.saga_id for r in both] == ["b"]
        running = await store.list_sagas(
            status=SagaStatus.RUNNING, created_before=10.0, limit=1
        )
        assert [r.saga_id for r in running] == ["b"]

    async def test_ids_with_prefix(self, store: SagaStore) -> None:
        for saga_id in ("abc123", "abc124", "abd000", "xabc12"):
            await store.create(make_record(saga_id), [])
        assert await store.ids_with_prefix("abc") == ["abc123", "abc124"]
        assert await store.ids_with_prefix("abc", limit=1) == ["abc123"]
        assert await store.ids_with_prefix("ab%") == []
        assert await store.ids_with_prefix("zzz") == []

    async def test_unfinished_lists_non_terminal_oldest_first(
        self, store: SagaStore
    ) -> None:
        await store.create(make_record("new", created=5.0), [])
        await store.create(make_record("old", created=1.0), [])
        await store.create(make_record("done", status=SagaStatus.COMPENSATED), [])
        await store.create(
            make_record("back", status=SagaStatus.COMPENSATING, created=3.0), []
        )
        await store.create(make_record("other", name="refund", created=0.5), [])
        assert await store.unfinished(["order"]) == ["old", "back", "new"]
        assert await store.unfinished() == ["other", "old", "back", "new"]

    async def test_commits_are_counted(self, store: SagaStore) -> None:
        before = commits(store)
        record = make_record("s1")
        await store.create(record, [entry("s1", "started")])
        await store.save(replace(record, version=2), 1, [entry("s1", "x")])
        assert commits(store) - before == 2


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

    async def test_a_claim_says_whose_lease_it_took(self, store: SagaStore) -> None:
        await store.create(make_record("never", created=1.0), [])
        await store.create(make_record("lapsed", created=2.0), [], owner="w1", lease=-1)
        await store.create(make_record("gone", created=3.0), [], owner="w2", lease=60)
        await store.create(make_record("handed", created=4.0), [], owner="w3", lease=60)
        await store.release("w3", ["handed"])
        claimed = await store.claim("w4", ["order"], lease=-1, gone=["w2"])
        taken = {r.saga_id: r.previous_owner for r in claimed}
        assert taken == {"never": None, "lapsed": "w1", "gone": "w2", "handed": None}
        again = await store.claim("w5", ["order"], lease=60, limit=1)
        assert [(r.saga_id, r.previous_owner) for r in again] == [("never", "w4")]
        # only what a claim returns says it; the record itself does not keep it
        assert (await store.get("never")).previous_owner is None
        assert again[0] == await store.get("never")

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

        async def claim(handle: SagaStore, owner: str) -> list[str]:
            batch = await handle.claim(owner, ["order"], lease=60, limit=3)
            return [r.saga_id for r in batch]

        assert await records.claim_race(claim, store, peer) == ids
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

    async def test_leases_say_who_holds_each_unfinished_saga(
        self, store: SagaStore
    ) -> None:
        await store.create(make_record("free"), [])
        await store.create(make_record("held"), [], owner="w1", lease=60)
        await store.create(make_record("lapsed"), [], owner="w2", lease=-1)
        await store.create(
            make_record("done", status=SagaStatus.SUCCEEDED), [], owner="w1", lease=60
        )
        ids = ["free", "held", "lapsed", "done", "ghost", "held"]
        assert await store.leases(ids) == {
            "free": Lease(None, False, 1),
            "held": Lease("w1", True, 1),
            "lapsed": Lease("w2", False, 1),
        }
        assert await store.leases([]) == {}
        # a save without an owner keeps the lease; a release drops it
        await store.save(replace(make_record("held"), version=2), 1, [])
        assert (await store.leases(["held"]))["held"] == Lease("w1", True, 2)
        await store.release("w1", ["held"])
        assert (await store.leases(["held"]))["held"] == Lease(None, False, 2)

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
        await store.create(make_record("late", deadline=records.PAST + 2), [])
        await store.create(make_record("later", deadline=records.PAST + 1), [])
        await store.create(
            make_record(
                "back",
                status=SagaStatus.COMPENSATING,
                deadline=records.PAST + 3,
                created=1.0,
            ),
            [],
        )
        await store.create(make_record("future", deadline=records.FUTURE), [])
        await store.create(make_record("none"), [])
        await store.create(
            make_record("done", status=SagaStatus.SUCCEEDED, deadline=records.PAST), []
        )
        await store.create(
            make_record("failed", status=SagaStatus.FAILED, deadline=records.PAST), []
        )
        await store.create(
            make_record("refund", name="refund", deadline=records.PAST), []
        )
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
        record = make_record("s1", deadline=records.FUTURE)
        await store.create(record, [])
        assert await store.due_deadlines(["order"]) == []
        await store.save(replace(record, version=2, deadline=records.PAST), 1, [])
        assert await store.due_deadlines(["order"]) == ["s1"]
        done = replace(
            record, version=3, status=SagaStatus.SUCCEEDED, deadline=records.PAST
        )
        await store.save(done, 2, [])
        assert await store.due_deadlines(["order"]) == []
