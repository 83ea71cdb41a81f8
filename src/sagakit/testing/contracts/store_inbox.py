"""Store contract, the inbox: a message consumed once."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from sagakit import SagaStatus
from sagakit.errors import DuplicateMessage
from sagakit.ports.store import InboxEntry, SagaStore
from sagakit.testing.contracts.records import (
    StoreFixtures,
    commits,
    entry,
    make_record,
    message,
)


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
