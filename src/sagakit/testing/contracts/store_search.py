"""What an operator's search and paging need of a store: ``list_sagas``
page by page (keyset, ties broken by id), sagas by idempotency key, and a
bounded search of the contexts."""

from __future__ import annotations

import itertools

from sagakit import SagaStatus
from sagakit.ports.store import SagaRecord, SagaStore
from sagakit.testing.contracts.records import StoreFixtures, make_record

_PAGED = [  # several created together: the id decides between them
    ("p1", "order", SagaStatus.RUNNING, 1.0),
    ("p5", "order", SagaStatus.SUCCEEDED, 2.0),
    ("p3", "refund", SagaStatus.RUNNING, 2.0),
    ("p4", "order", SagaStatus.RUNNING, 2.0),
    ("p2", "order", SagaStatus.FAILED, 3.0),
    ("p0", "refund", SagaStatus.RUNNING, 3.0),
    ("p6", "order", SagaStatus.RUNNING, 4.0),
]
_WAITING = {"p3", "p4", "p6"}


async def _pages(store: SagaStore, size: int, **filters: object) -> list[list[str]]:
    """Every page of ``size``, each after the last saga of the one before."""
    pages: list[list[str]] = []
    last: SagaRecord | None = None
    while True:
        page = await store.list_sagas(
            limit=size,
            created_before=None if last is None else last.created_at,
            before_id=None if last is None else last.saga_id,
            **filters,  # type: ignore[arg-type]
        )
        if not page:
            return pages
        pages.append([r.saga_id for r in page])
        last = page[-1]


class SagaSearchContract(StoreFixtures):
    """Keyset pages, idempotency keys and context search."""

    async def test_pages_hold_every_saga_once(self, store: SagaStore) -> None:
        for saga_id, saga, ended, created in _PAGED:
            await store.create(
                make_record(saga_id, name=saga, status=ended, created=created), []
            )
        for saga_id in _WAITING:
            await store.mark_waiting(saga_id, "needs order v2")
        statuses: list[SagaStatus | None] = [None, SagaStatus.RUNNING]
        names: list[str | None] = [None, "order"]
        combos = itertools.product(statuses, names, [False, True], [1, 2, 3])
        for status, name, waiting, size in combos:
            filters = {"status": status, "saga_name": name, "waiting": waiting}
            every = await store.list_sagas(limit=100, **filters)  # type: ignore[arg-type]
            pages = await _pages(store, size, **filters)
            assert [i for p in pages for i in p] == [r.saga_id for r in every]
            assert all(len(p) == size for p in pages[:-1]), (filters, size, pages)
        assert [r.saga_id for r in await store.list_sagas()] == [
            "p6", "p2", "p0", "p5", "p4", "p3", "p1"
        ]  # fmt: skip
        after_p4 = await store.list_sagas(created_before=2.0, before_id="p4")
        assert [r.saga_id for r in after_p4] == ["p3", "p1"]

    async def test_sagas_by_idempotency_key(self, store: SagaStore) -> None:
        await store.create(make_record("k1", key="booking-81", created=1.0), [])
        await store.create(
            make_record("k2", name="refund", key="booking-81", created=2.0), []
        )
        await store.create(make_record("k3", key="booking-82", created=3.0), [])
        await store.create(make_record("k4", created=4.0), [])
        found = await store.find_by_key("booking-81")
        assert [(r.saga_id, r.idempotency_key) for r in found] == [
            ("k2", "booking-81"),
            ("k1", "booking-81"),
        ]
        assert [r.saga_id for r in await store.find_by_key("booking-81", 1)] == ["k2"]
        assert await store.find_by_key("booking-8") == []

    async def test_context_search_reads_the_newest_only(self, store: SagaStore) -> None:
        contexts = [
            {"traveller": "Maria", "city": "Oslo"},
            {"traveller": "Jon", "city": "Bergen"},
            {"traveller": "maria", "note": "window seat"},
            {"traveller": "Ana", "city": "OSLO"},
        ]
        for n, context in enumerate(contexts):
            record = make_record(f"c{n}", context=context, created=float(n))
            await store.create(record, [])
        maria = await store.search_context("MARIA")
        assert [r.saga_id for r in maria] == ["c2", "c0"]
        assert maria[0].context == {"traveller": "maria", "note": "window seat"}
        assert [r.saga_id for r in await store.search_context("oslo")] == ["c3", "c0"]
        assert [r.saga_id for r in await store.search_context("oslo", limit=1)] == [
            "c3"
        ]
        newest_two = await store.search_context("oslo", scan=2)
        assert [r.saga_id for r in newest_two] == ["c3"]  # c0 is not read
        assert await store.search_context("window seat", scan=1) == []
        assert await store.search_context("nowhere") == []
