"""The store contract: written once, subclassed per adapter."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from sagakit import ConcurrencyError, SagaNotFound, SagaStatus
from sagakit.engine.state import ErrorInfo, SagaState, StepState, StepStatus
from sagakit.errors import DuplicateMessage, SagaAlreadyExists
from sagakit.ports.store import (
    Created,
    HistoryEntry,
    InboxEntry,
    OutboxMessage,
    SagaRecord,
    SagaStore,
)


def commits(store: SagaStore) -> int:
    """The adapter's commit counter (not part of the port)."""
    counted: int = getattr(store, "commits")  # noqa: B009 - not in the Protocol
    return counted


def make_record(
    saga_id: str,
    *,
    name: str = "order",
    status: SagaStatus = SagaStatus.RUNNING,
    key: str | None = None,
    created: float = 100.0,
    context: dict[str, Any] | None = None,
    deadline: float | None = None,
) -> SagaRecord:
    state = SagaState(
        saga_id=saga_id,
        saga_name=name,
        status=status,
        steps={"reserve": StepState(StepStatus.RUNNING, attempts=1)},
    )
    return SagaRecord(
        saga_id=saga_id,
        saga_name=name,
        status=status,
        version=1,
        state=state,
        context=context if context is not None else {"order_id": saga_id},
        idempotency_key=key,
        created_at=created,
        updated_at=created,
        deadline=deadline,
    )


def entry(saga_id: str, outcome: str, **kw: Any) -> HistoryEntry:
    return HistoryEntry(
        saga_id=saga_id,
        step=kw.pop("step", "reserve"),
        kind=kw.pop("kind", "action"),
        attempt=kw.pop("attempt", 1),
        outcome=outcome,
        started_at=kw.pop("started_at", 1.0),
        finished_at=kw.pop("finished_at", 1.5),
        **kw,
    )


# Far in the past and far in the future: "due" and "not yet due" without
# faking the clock ("now" is the database clock on PostgreSQL).
PAST = 1_000.0
FUTURE = 4_000_000_000.0


def message(
    message_id: str,
    *,
    available_at: float = PAST,
    body: bytes | None = None,
    saga_id: str | None = "s1",
    destination: str = "payments.commands",
) -> OutboxMessage:
    return OutboxMessage(
        message_id=message_id,
        destination=destination,
        body=body if body is not None else f"body of {message_id}".encode(),
        available_at=available_at,
        saga_id=saga_id,
    )


class StoreContract:
    """Subclass and provide a ``store`` fixture returning a fresh, empty store."""

    @pytest.fixture
    def store(self) -> SagaStore:
        raise NotImplementedError

    @pytest.fixture
    def peer(self, store: SagaStore) -> SagaStore:
        """A second handle on the same data, as another worker process has.

        Override where the adapter can open one (own connection or pool)."""
        return store

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
        with pytest.raises(SagaAlreadyExists, match="s1"):
            await store.create(
                make_record("s1", context={"n": 2}),
                [entry("s1", "again")],
                outbox=[message("m1")],
            )
        assert (await store.get("s1")).context == {"n": 1}
        assert await store.history("s1") == []
        assert await store.claim_outbox("relay", lease=60) == []

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

    # -- outbox --------------------------------------------------------------

    async def test_create_and_save_write_the_outbox(self, store: SagaStore) -> None:
        record = make_record("s1")
        await store.create(record, [], outbox=[message("m1", body=b"\x00\xffraw")])
        await store.save(
            replace(record, version=2),
            1,
            [],
            outbox=[message("m2", available_at=PAST + 1, saga_id=None)],
        )
        claimed = await store.claim_outbox("relay", lease=60)
        assert claimed == [
            message("m1", body=b"\x00\xffraw"),
            message("m2", available_at=PAST + 1, saga_id=None),
        ]
        assert isinstance(claimed[0].body, bytes)

    async def test_claim_outbox_oldest_first_and_only_when_available(
        self, store: SagaStore
    ) -> None:
        record = make_record("s1")
        await store.create(
            record,
            [],
            outbox=[
                message("m-c", available_at=PAST + 3),
                message("m-later", available_at=FUTURE),
                message("m-a", available_at=PAST + 1),
            ],
        )
        await store.save(
            replace(record, version=2),
            1,
            [],
            outbox=[message("m-b", available_at=PAST + 2)],
        )
        first = await store.claim_outbox("relay", lease=60, limit=2)
        assert [m.message_id for m in first] == ["m-a", "m-b"]
        rest = await store.claim_outbox("relay", lease=60)
        assert [m.message_id for m in rest] == ["m-c"]
        assert await store.claim_outbox("relay", lease=60) == []

    async def test_same_available_at_comes_in_write_order(
        self, store: SagaStore
    ) -> None:
        record = make_record("s1")
        await store.create(record, [], outbox=[message("m3")])
        await store.save(replace(record, version=2), 1, [], outbox=[message("m1")])
        await store.save(replace(record, version=3), 2, [], outbox=[message("m2")])
        claimed = await store.claim_outbox("relay", lease=60)
        assert [m.message_id for m in claimed] == ["m3", "m1", "m2"]

    async def test_held_messages_are_skipped_until_the_hold_expires(
        self, store: SagaStore
    ) -> None:
        await store.create(
            make_record("s1"), [], outbox=[message("held"), message("lapsed")]
        )
        assert len(await store.claim_outbox("r1", lease=60, limit=1)) == 1
        (lapsed,) = await store.claim_outbox("r1", lease=-1)
        assert lapsed.message_id == "lapsed"
        # r1's hold on "lapsed" has expired: another relay takes it again.
        again = await store.claim_outbox("r2", lease=60)
        assert [m.message_id for m in again] == ["lapsed"]
        assert await store.claim_outbox("r3", lease=60) == []

    async def test_messages_written_held_wait_for_their_hold(
        self, store: SagaStore
    ) -> None:
        record = make_record("s1")
        held = replace(message("held"), held_by="w1", hold=60.0)
        lapsed = replace(message("lapsed"), held_by="w1", hold=-1.0)
        await store.create(record, [], outbox=[held, lapsed, message("free")])
        later = replace(message("held-later"), held_by="w1", hold=60.0)
        await store.save(replace(record, version=2), 1, [], outbox=[later])
        # the writer publishes "held" and "held-later" itself; a relay
        # takes only what nobody holds and what a (dead) writer held too long
        claimed = await store.claim_outbox("r2", lease=60)
        assert sorted(m.message_id for m in claimed) == ["free", "lapsed"]
        assert all(m.held_by is None for m in claimed)
        await store.mark_sent(["held"])
        assert await store.claim_outbox("r3", lease=60) == []

    async def test_count_by_status_counts_every_instance(
        self, store: SagaStore
    ) -> None:
        assert await store.count_by_status() == {}
        for n in range(1203):  # more than the dashboard's old 1000 cap
            await store.create(make_record(f"s{n:04d}"), [])
        done = make_record("s0000", status=SagaStatus.SUCCEEDED)
        await store.save(replace(done, version=2), 1, [])
        await store.create(make_record("t1", name="refund"), [])
        assert await store.count_by_status() == {
            SagaStatus.RUNNING: 1203,
            SagaStatus.SUCCEEDED: 1,
        }
        assert await store.count_by_status("refund") == {SagaStatus.RUNNING: 1}
        assert await store.count_by_status("nothing") == {}

    async def test_release_outbox_frees_held_messages(self, store: SagaStore) -> None:
        mine = [replace(message(m), held_by="w1", hold=60.0) for m in ("a", "b")]
        theirs = replace(message("c"), held_by="w2", hold=60.0)
        await store.create(make_record("s1"), [], outbox=[*mine, theirs])
        assert await store.claim_outbox("r", lease=60) == []
        assert await store.release_outbox("w1") == 2
        assert sorted(
            m.message_id for m in await store.claim_outbox("r", lease=60)
        ) == [
            "a",
            "b",
        ]
        assert await store.release_outbox("nobody") == 0
        assert await store.release_outbox() == 3  # a, b (now r's) and c
        assert len(await store.claim_outbox("r2", lease=60)) == 3

    async def test_mark_sent_forgets_messages(self, store: SagaStore) -> None:
        await store.create(
            make_record("s1"),
            [],
            outbox=[message("m1"), message("m2"), message("m3", available_at=PAST + 1)],
        )
        await store.claim_outbox("relay", lease=-1)
        await store.mark_sent(["m1", "m3", "ghost"])
        await store.mark_sent([])
        assert [m.message_id for m in await store.claim_outbox("relay", lease=60)] == [
            "m2"
        ]
        await store.mark_sent(["m2"])  # sent while held: gone as well
        assert await store.claim_outbox("relay", lease=-1) == []

    async def test_an_outbox_id_written_twice_keeps_the_first(
        self, store: SagaStore
    ) -> None:
        record = make_record("s1")
        await store.create(
            record, [], outbox=[message("m1", body=b"first"), message("m1", body=b"x")]
        )
        await store.save(
            replace(record, version=2), 1, [], outbox=[message("m1", body=b"second")]
        )
        (kept,) = await store.claim_outbox("relay", lease=60)
        assert kept.body == b"first"
        assert (await store.get("s1")).version == 2

    async def test_create_with_a_taken_key_writes_no_outbox(
        self, store: SagaStore
    ) -> None:
        await store.create(make_record("s1", key="k"), [])
        _, created = await store.create(
            make_record("s2", key="k"), [], outbox=[message("m1", saga_id="s2")]
        )
        assert not created
        assert await store.claim_outbox("relay", lease=60) == []

    async def test_a_conflicting_save_writes_no_outbox_and_no_inbox(
        self, store: SagaStore
    ) -> None:
        record = make_record("s1")
        await store.create(record, [])
        await store.save(replace(record, version=2), 1, [])
        with pytest.raises(ConcurrencyError, match="s1"):
            await store.save(
                replace(record, version=2, deadline=PAST),
                1,
                [entry("s1", "late")],
                outbox=[message("m1")],
                inbox=InboxEntry("orders", "reply-1"),
            )
        assert await store.claim_outbox("relay", lease=60) == []
        assert await store.inbox_reply("orders", "reply-1") is None
        assert (await store.get("s1")).deadline is None
        assert await store.history("s1") == []
        # The message was not consumed: a save at the right version takes it.
        await store.save(
            replace(record, version=3), 2, [], inbox=InboxEntry("orders", "reply-1")
        )
        assert await store.inbox_reply("orders", "reply-1") == b""

    async def test_save_of_an_unknown_saga_writes_nothing(
        self, store: SagaStore
    ) -> None:
        with pytest.raises(SagaNotFound):
            await store.save(
                make_record("ghost"),
                1,
                [],
                outbox=[message("m1")],
                inbox=InboxEntry("orders", "reply-1"),
            )
        assert await store.claim_outbox("relay", lease=60) == []
        assert await store.inbox_reply("orders", "reply-1") is None

    async def test_concurrent_outbox_claimers_never_get_the_same_message(
        self, store: SagaStore, peer: SagaStore
    ) -> None:
        ids = [f"m{i:02}" for i in range(30)]
        await store.create(
            make_record("s1"),
            [],
            outbox=[message(m, available_at=PAST + i) for i, m in enumerate(ids)],
        )

        async def drain(handle: SagaStore, owner: str) -> list[str]:
            got: list[str] = []
            while batch := await handle.claim_outbox(owner, lease=60, limit=3):
                got.extend(m.message_id for m in batch)
                await asyncio.sleep(0)
            return got

        first, second = await asyncio.gather(drain(store, "r1"), drain(peer, "r2"))
        assert not set(first) & set(second)
        assert sorted(first + second) == ids

    # -- inbox ---------------------------------------------------------------

    async def test_save_with_an_inbox_entry_records_it(self, store: SagaStore) -> None:
        record = make_record("s1")
        await store.create(record, [])
        assert await store.inbox_reply("orders", "reply-1") is None
        await store.save(
            replace(record, version=2),
            1,
            [entry("s1", "succeeded")],
            inbox=InboxEntry("orders", "reply-1"),
        )
        assert await store.inbox_reply("orders", "reply-1") == b""
        assert await store.inbox_reply("refunds", "reply-1") is None
        assert await store.inbox_reply("orders", "reply-2") is None

    async def test_a_duplicate_inbox_entry_changes_nothing(
        self, store: SagaStore
    ) -> None:
        record = make_record("s1")
        await store.create(record, [])
        await store.save(
            replace(record, version=2),
            1,
            [entry("s1", "first")],
            inbox=InboxEntry("orders", "reply-1"),
        )
        written = commits(store)
        with pytest.raises(DuplicateMessage, match="reply-1"):
            await store.save(
                replace(record, version=3, status=SagaStatus.SUCCEEDED),
                2,
                [entry("s1", "again")],
                owner="w1",
                lease=60,
                outbox=[message("m1")],
                inbox=InboxEntry("orders", "reply-1"),
            )
        assert commits(store) == written
        got = await store.get("s1")
        assert (got.version, got.status) == (2, SagaStatus.RUNNING)
        assert [h.outcome for h in await store.history("s1")] == ["first"]
        assert await store.claim_outbox("relay", lease=60) == []
        # Another consumer may take the same message id.
        await store.save(
            replace(record, version=3), 2, [], inbox=InboxEntry("refunds", "reply-1")
        )
        assert (await store.get("s1")).version == 3
        # The duplicate did not lease the saga to w1 either.
        assert [r.saga_id for r in await store.claim("w2", ["order"], lease=60)] == [
            "s1"
        ]

    async def test_a_duplicate_wins_over_a_stale_version(
        self, store: SagaStore
    ) -> None:
        record = make_record("s1")
        await store.create(record, [])
        await store.save(
            replace(record, version=2), 1, [], inbox=InboxEntry("orders", "reply-1")
        )
        with pytest.raises(DuplicateMessage):
            await store.save(
                replace(record, version=2), 1, [], inbox=InboxEntry("orders", "reply-1")
            )

    async def test_record_inbox_then_inbox_reply(self, store: SagaStore) -> None:
        assert await store.record_inbox("payments", "cmd-1", b"reply bytes") is True
        assert await store.record_inbox("payments", "cmd-1", b"other") is False
        assert await store.inbox_reply("payments", "cmd-1") == b"reply bytes"
        assert await store.record_inbox("payments", "cmd-2", None) is True
        assert await store.inbox_reply("payments", "cmd-2") == b""
        assert await store.record_inbox("payments", "cmd-3", b"") is True
        assert await store.inbox_reply("payments", "cmd-3") == b""
        assert await store.inbox_reply("payments", "cmd-4") is None
        assert await store.inbox_reply("shipping", "cmd-1") is None

    async def test_save_rejects_a_message_recorded_by_record_inbox(
        self, store: SagaStore
    ) -> None:
        record = make_record("s1")
        await store.create(record, [])
        assert await store.record_inbox("orders", "reply-1", None)
        with pytest.raises(DuplicateMessage):
            await store.save(
                replace(record, version=2), 1, [], inbox=InboxEntry("orders", "reply-1")
            )
        assert not await store.record_inbox("orders", "reply-1", b"x")

    async def test_concurrent_saves_of_one_message_write_it_once(
        self, store: SagaStore, peer: SagaStore
    ) -> None:
        """Two sagas consume the same message at once: one save wins."""
        first, second = make_record("s1"), make_record("s2")
        await store.create(first, [])
        await store.create(second, [])
        outcomes = await asyncio.gather(
            store.save(
                replace(first, version=2),
                1,
                [entry("s1", "took")],
                outbox=[message("from-s1")],
                inbox=InboxEntry("orders", "reply-1"),
            ),
            peer.save(
                replace(second, version=2),
                1,
                [entry("s2", "took")],
                outbox=[message("from-s2")],
                inbox=InboxEntry("orders", "reply-1"),
            ),
            return_exceptions=True,
        )
        assert sorted(type(o).__name__ for o in outcomes) == [
            "DuplicateMessage",
            "NoneType",
        ]
        winner = "s1" if outcomes[0] is None else "s2"
        loser = "s2" if winner == "s1" else "s1"
        assert (await store.get(winner)).version == 2
        assert (await store.get(loser)).version == 1
        assert await store.history(loser) == []
        claimed = await store.claim_outbox("relay", lease=60)
        assert [m.message_id for m in claimed] == [f"from-{winner}"]
