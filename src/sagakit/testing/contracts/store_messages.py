"""Store contract, messages: the transactional outbox (``Outbox``) and the
inbox, a message consumed once (``Inbox``)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from sagakit import ConcurrencyError, SagaNotFound, SagaStatus
from sagakit.errors import DuplicateMessage
from sagakit.ports.store import InboxEntry, SagaStore
from sagakit.testing.contracts import records
from sagakit.testing.contracts.records import (
    StoreFixtures,
    commits,
    entry,
    make_record,
    message,
)


class OutboxContract(StoreFixtures):
    """Messages written with a transition, claimed, held and forgotten
    (``Outbox``)."""

    # -- outbox --------------------------------------------------------------

    async def test_create_and_save_write_the_outbox(self, store: SagaStore) -> None:
        record = make_record("s1")
        await store.create(record, [], outbox=[message("m1", body=b"\x00\xffraw")])
        await store.save(
            replace(record, version=2),
            1,
            [],
            outbox=[message("m2", available_at=records.PAST + 1, saga_id=None)],
        )
        claimed = await store.claim_outbox("relay", lease=60)
        assert claimed == [
            message("m1", body=b"\x00\xffraw"),
            message("m2", available_at=records.PAST + 1, saga_id=None),
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
                message("m-c", available_at=records.PAST + 3),
                message("m-later", available_at=records.FUTURE),
                message("m-a", available_at=records.PAST + 1),
            ],
        )
        await store.save(
            replace(record, version=2),
            1,
            [],
            outbox=[message("m-b", available_at=records.PAST + 2)],
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
            outbox=[
                message("m1"),
                message("m2"),
                message("m3", available_at=records.PAST + 1),
            ],
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
                replace(record, version=2, deadline=records.PAST),
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
            outbox=[
                message(m, available_at=records.PAST + i) for i, m in enumerate(ids)
            ],
        )

        async def claim(handle: SagaStore, owner: str) -> list[str]:
            batch = await handle.claim_outbox(owner, lease=60, limit=3)
            return [m.message_id for m in batch]

        assert await records.claim_race(claim, store, peer) == ids


class InboxContract(StoreFixtures):
    """Consumed messages recorded with a transition or on their own
    (``Inbox``)."""

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
