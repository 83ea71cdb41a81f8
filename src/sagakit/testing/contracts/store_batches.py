"""Store contract, batches: the creates and saves of several instances in
one commit (:class:`~sagakit.ports.store.GroupSaves`), each as it would be
alone. A batch with a history line of another saga than the one its write
writes (see :mod:`~sagakit.testing.contracts.store_history`) is refused
whole with a ``StoreError``, before anything of it is written: group
commit then writes each alone, and only that one fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from sagakit import ConcurrencyError, SagaAlreadyExists, SagaNotFound, SagaStatus
from sagakit.errors import DuplicateMessage, StoreError
from sagakit.ports.store import (
    Create,
    GroupSaves,
    HistoryEntry,
    InboxEntry,
    OutboxMessage,
    Save,
)
from sagakit.testing.contracts.records import (
    StoreFixtures,
    commits,
    entry,
    make_record,
    message,
)

MISFILED = ("b", "other", "ghost")
"""Whom a misfiled line names: a saga of the same batch, one outside it that
exists, one that does not."""


class GroupSavesContract(StoreFixtures):
    """``create_many`` and ``save_many``: one commit for the batch; what one
    write is refused with is returned in its place and writes nothing."""

    async def _created(self, store: Any, *ids: str) -> None:
        for saga_id in ids:
            await store.create(make_record(saga_id), [entry(saga_id, "started")])

    async def test_the_store_batches(self, store: Any) -> None:
        assert isinstance(store, GroupSaves)

    async def test_save_many_commits_every_save_once(self, store: Any) -> None:
        await self._created(store, "s1", "s2", "s3")
        before = commits(store)
        saves = [
            Save(
                replace(make_record(i), version=2, status=SagaStatus.SUCCEEDED),
                1,
                [entry(i, "succeeded")],
            )
            for i in ("s1", "s2", "s3")
        ]

        assert await store.save_many(saves) == [None, None, None]

        assert commits(store) == before + 1
        for saga_id in ("s1", "s2", "s3"):
            got = await store.get(saga_id)
            assert (got.version, got.status) == (2, SagaStatus.SUCCEEDED)
            outcomes = [h.outcome for h in await store.history(saga_id)]
            assert outcomes == ["started", "succeeded"]

    async def test_a_refused_save_writes_nothing_and_spares_the_others(
        self, store: Any
    ) -> None:
        await self._created(store, "s1", "s2", "s3")
        await store.save(replace(make_record("s3"), version=2), 1, [])  # s3 moved on
        await store.save(
            replace(make_record("s2"), version=2),
            1,
            [],
            inbox=InboxEntry("orders", "reply-1"),
        )
        saves = [
            Save(replace(make_record("s1"), version=2), 1, [entry("s1", "ok")]),
            Save(  # consumed before
                replace(make_record("s2"), version=3),
                2,
                [entry("s2", "ok")],
                outbox=[message("m-dup", saga_id="s2")],
                inbox=InboxEntry("orders", "reply-1"),
            ),
            Save(  # stale
                replace(make_record("s3"), version=2),
                1,
                [entry("s3", "ok")],
                outbox=[message("m-stale", saga_id="s3")],
            ),
            Save(replace(make_record("gone"), version=2), 1, []),
            Save(
                replace(make_record("s4"), version=2),
                1,
                [],
                outbox=[message("m-new", saga_id="s1")],
            ),
        ]
        await self._created(store, "s4")

        done = await store.save_many(saves)

        assert done[0] is None
        assert done[4] is None
        assert isinstance(done[1], DuplicateMessage)
        assert isinstance(done[2], ConcurrencyError)
        assert isinstance(done[3], SagaNotFound)
        assert (await store.get("s1")).version == 2
        assert (await store.get("s2")).version == 2
        assert (await store.get("s3")).version == 2
        assert [h.outcome for h in await store.history("s2")] == ["started"]
        assert [h.outcome for h in await store.history("s3")] == ["started"]
        claimed = await store.claim_outbox("relay", lease=60)
        assert [m.message_id for m in claimed] == ["m-new"]

    async def test_refused_plain_saves_write_nothing_and_spare_the_others(
        self, store: Any
    ) -> None:
        # no outbox or inbox: PostgreSQL saves these in one statement
        await self._created(store, "p1", "p2", "p3")
        await store.save(replace(make_record("p2"), version=2), 1, [])  # moved on
        saves = [
            Save(replace(make_record("p1"), version=2), 1, [entry("p1", "ok")]),
            Save(replace(make_record("p2"), version=2), 1, [entry("p2", "ok")]),
            Save(replace(make_record("gone"), version=2), 1, [entry("gone", "ok")]),
            Save(
                replace(make_record("p3"), version=2, status=SagaStatus.FAILED),
                1,
                [entry("p3", "one"), entry("p3", "two")],
                owner="w1",
                lease=30,
            ),
        ]

        done = await store.save_many(saves)

        assert done[0] is None
        assert isinstance(done[1], ConcurrencyError)
        assert isinstance(done[2], SagaNotFound)
        assert done[3] is None
        assert [h.outcome for h in await store.history("p1")] == ["started", "ok"]
        assert [h.outcome for h in await store.history("p2")] == ["started"]
        assert [h.outcome for h in await store.history("p3")] == [
            "started",
            "one",
            "two",
        ]
        assert await store.history("gone") == []
        got = await store.get("p3")
        assert (got.version, got.status) == (2, SagaStatus.FAILED)

    async def test_one_inbox_entry_twice_in_a_batch_is_consumed_once(
        self, store: Any
    ) -> None:
        await self._created(store, "s1", "s2")
        reply = InboxEntry("orders", "reply-9")
        saves = [
            Save(replace(make_record(i), version=2), 1, [], inbox=reply)
            for i in ("s1", "s2")
        ]

        done = await store.save_many(saves)

        assert done[0] is None
        assert isinstance(done[1], DuplicateMessage)
        assert (await store.get("s2")).version == 1

    async def test_create_many_creates_each_once(self, store: Any) -> None:
        await store.create(make_record("old", key="k-old"), [])
        await self._created(store, "taken")
        before = commits(store)
        creates = [
            Create(make_record("n1"), [entry("n1", "started")]),
            Create(make_record("again", key="k-old"), []),  # key taken: existing
            Create(make_record("taken"), []),  # id taken
            Create(
                make_record("n2", key="k-new"),
                [entry("n2", "started")],
                outbox=[message("m-n2", saga_id="n2")],
            ),
        ]

        done = await store.create_many(creates)

        assert commits(store) == before + 1
        assert done[0].created
        assert done[0].record.saga_id == "n1"
        assert not done[1].created
        assert done[1].record.saga_id == "old"
        assert isinstance(done[2], SagaAlreadyExists)
        assert done[2].saga_id == "taken"
        assert done[3].created
        assert [h.outcome for h in await store.history("n2")] == ["started"]
        with_pending = await store.claim_outbox("relay", lease=60)
        assert [m.message_id for m in with_pending] == ["m-n2"]
        assert await store.history("again") == []
        assert (await store.get("taken")).version == 1

    async def test_plain_creates_each_create_once(self, store: Any) -> None:
        # no outbox: PostgreSQL creates these in one statement
        await store.create(make_record("old", key="k-old"), [])
        await self._created(store, "taken")
        creates = [
            Create(make_record("n1"), [entry("n1", "started")]),
            Create(make_record("again", key="k-old"), [entry("again", "x")]),
            Create(make_record("taken"), [entry("taken", "x")]),
            Create(make_record("d1", key="k-dup"), [entry("d1", "started")]),
            Create(make_record("d2", key="k-dup"), [entry("d2", "x")]),
            Create(make_record("n2"), [], owner="w1", lease=30),
        ]

        done = await store.create_many(creates)

        assert [getattr(d, "created", None) for d in done] == [
            True,
            False,
            None,
            True,
            False,
            True,
        ]
        assert done[1].record.saga_id == "old"
        assert isinstance(done[2], SagaAlreadyExists)
        assert done[4].record.saga_id == "d1"  # the key its batch took first
        assert [h.outcome for h in await store.history("n1")] == ["started"]
        assert [h.outcome for h in await store.history("d1")] == ["started"]
        for gone in ("again", "d2"):
            assert await store.history(gone) == []
        assert [h.outcome for h in await store.history("taken")] == ["started"]
        assert (await store.get("n2")).version == 1

    async def test_empty_batches_write_nothing(self, store: Any) -> None:
        before = commits(store)
        assert await store.save_many([]) == []
        assert await store.create_many([]) == []
        assert commits(store) == before

    async def test_a_create_batch_with_a_line_of_another_saga_writes_nothing(
        self, store: Any
    ) -> None:
        await self._created(store, "other")
        for creates in _misfiled(
            lambda i, lines, out: Create(make_record(i), lines, outbox=out)
        ):
            before = commits(store)

            with pytest.raises(StoreError):
                await store.create_many(creates)

            assert commits(store) == before
            for saga_id in ("a", "b", "c", "ghost"):
                with pytest.raises(SagaNotFound):
                    await store.get(saga_id)
                assert await store.history(saga_id) == []
            await self._nothing_else(store)

    async def test_a_save_batch_with_a_line_of_another_saga_writes_nothing(
        self, store: Any
    ) -> None:
        await self._created(store, "other", "a", "b", "c")
        for saves in _misfiled(
            lambda i, lines, out: Save(
                replace(make_record(i), version=2), 1, lines, outbox=out
            )
        ):
            before = commits(store)

            with pytest.raises(StoreError):
                await store.save_many(saves)

            assert commits(store) == before
            for saga_id in ("a", "b", "c"):
                assert (await store.get(saga_id)).version == 1
                outcomes = [h.outcome for h in await store.history(saga_id)]
                assert outcomes == ["started"]
            await self._nothing_else(store)

    async def _nothing_else(self, store: Any) -> None:
        """Nothing under the sagas a misfiled line names, and no message."""
        assert [h.outcome for h in await store.history("other")] == ["started"]
        assert await store.history("ghost") == []
        assert await store.claim_outbox("relay", lease=60) == []


W = TypeVar("W")


def _misfiled(
    write: Callable[[str, list[HistoryEntry], list[OutboxMessage]], W],
) -> Iterator[list[W]]:
    """Batches of ``write(saga_id, lines, outbox)`` of sagas a, b and c, c's
    with a line of each saga of :data:`MISFILED`; with an outbox message
    each, or none (on PostgreSQL: one statement per write, pipelined, or
    one for the batch)."""
    for outbox in (False, True):
        for other in MISFILED:
            batch = [write(i, [entry(i, "ok")], _outbox(i, outbox)) for i in ("a", "b")]
            lines = [entry("c", "ok"), entry(other, "misfiled")]
            yield [*batch, write("c", lines, _outbox("c", outbox))]


def _outbox(saga_id: str, outbox: bool) -> list[OutboxMessage]:
    return [message(f"m-{saga_id}", saga_id=saga_id)] if outbox else []
