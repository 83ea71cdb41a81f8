"""The notification store's contract: endings written with the transition
that ends a saga, once per event id, claimed by one notifier at a time,
retried, dropped, listed, pruned; and the unattended sagas a notifier
reports as stuck."""

from __future__ import annotations

from dataclasses import replace

from sagakit import SagaStatus
from sagakit.adapters.store import notification_store_for
from sagakit.ports.notification_store import (
    Notification,
    NotificationStatus,
    NotificationStore,
)
from sagakit.ports.store import SagaRecord, SagaStore
from sagakit.testing.contracts.records import (
    FUTURE,
    StoreFixtures,
    claim_race,
    make_record,
)


def note(
    event_id: str, *, saga: str | None = "order", at: float = 50.0
) -> Notification:
    return Notification(
        event_id=event_id,
        kind="saga.stuck",
        saga_id="s-" + event_id,
        saga_name=saga,
        version=3,
        occurred_at=at,
        detail={"reason": "orphaned", "owner": "w1"},
    )


async def moved(
    store: SagaStore,
    record: SagaRecord,
    status: SagaStatus,
    updated_at: float | None = None,
) -> SagaRecord:
    """Save ``record`` one version on, in ``status`` (at ``updated_at``)."""
    new = replace(
        record,
        version=record.version + 1,
        status=status,
        state=replace(record.state, status=status),
        updated_at=record.updated_at if updated_at is None else updated_at,
    )
    await store.save(new, record.version, [])
    return new


class NotificationStoreContract(StoreFixtures):
    """What every :class:`NotificationStore` does, over its saga store."""

    def notes(self, store: SagaStore) -> NotificationStore:
        return notification_store_for(store)

    async def test_a_bad_ending_is_written_with_the_transition(
        self, store: SagaStore
    ) -> None:
        notes = self.notes(store)
        one = make_record("s1")
        await store.create(one, [])
        one = await moved(store, one, SagaStatus.COMPENSATING, updated_at=110.0)
        one = await moved(store, one, SagaStatus.COMPENSATION_FAILED, updated_at=120.0)
        one = await moved(store, one, SagaStatus.COMPENSATION_FAILED)  # no change
        two = make_record("s2", name="refund")
        await store.create(two, [])
        two = await moved(store, two, SagaStatus.FAILED, updated_at=130.0)
        two = await moved(store, two, SagaStatus.RUNNING)  # an operator's retry
        two = await moved(store, two, SagaStatus.FAILED, updated_at=150.0)
        await store.create(make_record("s3", status=SagaStatus.FAILED), [])
        ok = make_record("s4")
        await store.create(ok, [])
        await moved(store, ok, SagaStatus.SUCCEEDED)
        found = await notes.notifications()
        assert [(n.event_id, n.kind, n.saga_name, n.version) for n in found] == [
            ("saga.failed:s2:4", "saga.failed", "refund", 4),
            ("saga.failed:s2:2", "saga.failed", "refund", 2),
            ("saga.compensation_failed:s1:3", "saga.compensation_failed", "order", 3),
            ("saga.failed:s3:1", "saga.failed", "order", 1),
        ]
        assert {n.status for n in found} == {NotificationStatus.PENDING}
        assert [n.occurred_at for n in found] == [150.0, 130.0, 120.0, 100.0]

    async def test_an_event_is_added_once(self, store: SagaStore) -> None:
        notes = self.notes(store)
        assert await notes.add_notifications([note("a"), note("b")]) == 2
        assert await notes.add_notifications([note("b"), note("c")]) == 1
        (claimed,) = await notes.claim_notifications("w1", hold=60, limit=1)
        await notes.notification_delivered(claimed.event_id, ["webhook"])
        assert await notes.add_notifications([note(claimed.event_id)]) == 0
        assert await notes.add_notifications([]) == 0
        listed = {n.event_id: n for n in await notes.notifications()}
        assert sorted(listed) == ["a", "b", "c"]
        assert listed["a"].detail == {"reason": "orphaned", "owner": "w1"}

    async def test_claims_hold_what_they_take(
        self, store: SagaStore, peer: SagaStore
    ) -> None:
        notes, other = self.notes(store), self.notes(peer)
        await notes.add_notifications([note(f"e{i}") for i in range(7)])
        await notes.add_notifications([note("x", saga="refund"), note("y", saga=None)])
        mine = await notes.claim_notifications("w1", hold=60, limit=2)
        assert len(mine) == 2
        rest = await other.claim_notifications("w2", hold=60, saga_names=["order"])
        assert len(rest) == 5
        assert not {n.event_id for n in mine} & {n.event_id for n in rest}
        assert (
            await other.claim_notifications("w2", hold=60, saga_names=["order"]) == []
        )
        left = await other.claim_notifications("w3", hold=60)
        assert sorted(n.event_id for n in left) == ["x", "y"]

    async def test_two_notifiers_never_take_the_same(
        self, store: SagaStore, peer: SagaStore
    ) -> None:
        await self.notes(store).add_notifications([note(f"n{i}") for i in range(40)])

        async def claim(handle: SagaStore, owner: str) -> list[str]:
            taken = await self.notes(handle).claim_notifications(
                owner, hold=60, limit=3
            )
            return [n.event_id for n in taken]

        assert len(await claim_race(claim, store, peer)) == 40

    async def test_a_failed_attempt_waits_or_drops(self, store: SagaStore) -> None:
        notes = self.notes(store)
        await notes.add_notifications([note("later"), note("never")])
        await notes.claim_notifications("w1", hold=60)
        await notes.notification_failed(
            "later", delivered_to=["callback"], error="HTTP 500", retry_in=FUTURE
        )
        await notes.notification_failed(
            "never", delivered_to=[], error="HTTP 410", retry_in=None
        )
        assert await notes.claim_notifications("w2", hold=60) == []
        listed = {n.event_id: n for n in await notes.notifications()}
        later, never = listed["later"], listed["never"]
        assert later.status is NotificationStatus.PENDING
        assert (later.attempts, later.delivered_to) == (1, ("callback",))
        assert (later.last_error, later.finished_at) == ("HTTP 500", None)
        assert never.status is NotificationStatus.DROPPED
        assert never.finished_at is not None
        dropped = await notes.notifications(status=NotificationStatus.DROPPED)
        assert [n.event_id for n in dropped] == ["never"]

    async def test_a_retry_comes_due_and_then_delivers(self, store: SagaStore) -> None:
        notes = self.notes(store)
        await notes.add_notifications([note("again")])
        await notes.claim_notifications("w1", hold=60)
        await notes.notification_failed(
            "again", delivered_to=[], error="timed out", retry_in=-1.0
        )
        (retry,) = await notes.claim_notifications("w2", hold=60)
        assert (retry.event_id, retry.attempts) == ("again", 1)
        await notes.notification_delivered("again", ["webhook", "callback"])
        (done,) = await notes.notifications()
        assert done.status is NotificationStatus.DELIVERED
        assert (done.attempts, done.delivered_to) == (2, ("callback", "webhook"))
        assert done.last_error is None
        assert await notes.claim_notifications("w3", hold=60) == []

    async def test_an_expired_hold_is_claimed_again(self, store: SagaStore) -> None:
        notes = self.notes(store)
        await notes.add_notifications([note("lost")])
        assert len(await notes.claim_notifications("dead", hold=-1.0)) == 1
        (again,) = await notes.claim_notifications("w2", hold=60)
        assert again.event_id == "lost"

    async def test_prune_forgets_old_events(self, store: SagaStore) -> None:
        notes = self.notes(store)
        await notes.add_notifications([note("old", at=10.0), note("new", at=90.0)])
        assert await notes.prune_notifications(50.0) == 1
        assert [n.event_id for n in await notes.notifications()] == ["new"]

    async def test_unattended_sagas(self, store: SagaStore) -> None:
        notes = self.notes(store)
        await store.create(make_record("free", created=10.0), [])
        await store.create(make_record("live", created=11.0), [], owner="w", lease=600)
        await store.create(make_record("gone", created=12.0), [], owner="w", lease=-5)
        await store.create(
            make_record("parked", created=13.0), [], owner="w", lease=600
        )
        await store.create(make_record("lost", created=14.0), [], owner="w", lease=600)
        await store.create(make_record("fresh", created=95.0), [])
        await store.create(make_record("other", name="refund", created=16.0), [])
        done = make_record("done", created=17.0, status=SagaStatus.SUCCEEDED)
        await store.create(done, [])
        parked = await store.get("parked")
        paused = replace(parked.state, paused=True)
        await store.save(replace(parked, version=2, state=paused), 1, [])
        await store.mark_waiting("lost", "needs order v2")

        found = await notes.unattended(unchanged_since=90.0, saga_names=["order"])
        assert [(u.record.saga_id, u.owner, u.lease_live) for u in found] == [
            ("free", None, False),
            ("gone", "w", False),
            ("parked", "w", True),
            ("lost", "w", True),
        ]
        assert found[2].record.state.paused
        assert found[3].record.waiting == "needs order v2"
        every = await notes.unattended(unchanged_since=100.0, limit=10)
        assert [u.record.saga_id for u in every] == [
            "free",
            "gone",
            "parked",
            "lost",
            "other",
            "fresh",
        ]
        first = await notes.unattended(unchanged_since=100.0, limit=2)
        assert [u.record.saga_id for u in first] == ["free", "gone"]
        rest = await notes.unattended(unchanged_since=100.0, after="gone", limit=3)
        assert [u.record.saga_id for u in rest] == ["parked", "lost", "other"]


__all__ = ["NotificationStoreContract"]
