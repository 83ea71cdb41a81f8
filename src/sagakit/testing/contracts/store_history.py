"""Store contract, history lines: a create or save appends only lines of
the saga it writes. A line that names another saga (one that exists, or
none) is refused with a ``StoreError`` and nothing of that write is stored:
not filed under the saga it names, nor under the one written, nor dropped.
The batches of :class:`~sagakit.ports.store.GroupSaves` refuse it alike
(:mod:`~sagakit.testing.contracts.store_batches`)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sagakit import SagaNotFound
from sagakit.errors import StoreError
from sagakit.ports.store import SagaStore
from sagakit.testing.contracts.records import (
    StoreFixtures,
    entry,
    make_record,
    message,
)

OTHERS = ("other", "ghost")
"""Whom a misfiled line names: a saga that exists, and one that does not."""


class SagaHistoryContract(StoreFixtures):
    """Each line appended is of the saga written (``SagaRepository``)."""

    async def _other(self, store: SagaStore) -> None:
        await store.create(make_record("other"), [entry("other", "started")])

    async def _unchanged(self, store: SagaStore) -> None:
        assert [h.outcome for h in await store.history("other")] == ["started"]
        assert await store.history("ghost") == []
        assert await store.claim_outbox("relay", lease=60) == []

    async def test_a_create_with_a_line_of_another_saga_is_refused(
        self, store: SagaStore
    ) -> None:
        await self._other(store)
        for outbox in ([], [message("m1", saga_id="s1")]):
            for other in OTHERS:
                with pytest.raises(StoreError, match="s1"):
                    await store.create(
                        make_record("s1"),
                        [entry("s1", "started"), entry(other, "misfiled")],
                        outbox=outbox,
                    )
                with pytest.raises(SagaNotFound):
                    await store.get("s1")
                assert await store.history("s1") == []
                await self._unchanged(store)

    async def test_a_save_with_a_line_of_another_saga_is_refused(
        self, store: SagaStore
    ) -> None:
        await self._other(store)
        await store.create(make_record("s1"), [entry("s1", "started")])
        for outbox in ([], [message("m1", saga_id="s1")]):
            for other in OTHERS:
                with pytest.raises(StoreError, match="s1"):
                    await store.save(
                        replace(make_record("s1"), version=2),
                        1,
                        [entry("s1", "ok"), entry(other, "misfiled")],
                        outbox=outbox,
                    )
                assert (await store.get("s1")).version == 1
                assert [h.outcome for h in await store.history("s1")] == ["started"]
                await self._unchanged(store)
