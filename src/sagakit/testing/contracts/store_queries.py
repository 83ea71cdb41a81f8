"""The operators' queries at any size: ``list`` with every combination of
filters, counts through every status change, id prefixes as ranges, and
unfinished instances and claims page by page (``after``)."""

from __future__ import annotations

import itertools
from dataclasses import replace

from sagakit import SagaStatus
from sagakit.ports.store import SagaRecord, SagaStore
from sagakit.testing.contracts.records import StoreFixtures, make_record

_SHAPES = [
    ("a1", "order", SagaStatus.RUNNING, 1.0),
    ("a2", "order", SagaStatus.SUCCEEDED, 2.0),
    ("a3", "refund", SagaStatus.SUCCEEDED, 2.0),  # created with a2: ids decide
    ("a0", "refund", SagaStatus.COMPENSATING, 2.0),
    ("a4", "order", SagaStatus.FAILED, 3.0),
    ("a5", "refund", SagaStatus.RUNNING, 4.0),
    ("a6", "order", SagaStatus.RUNNING, 5.0),
]
_WAITING = {"a1", "a0"}


def _expected(
    records: list[SagaRecord],
    *,
    status: SagaStatus | None,
    name: str | None,
    before: float | None,
    waiting: bool,
    limit: int,
) -> list[str]:
    """What ``list_sagas`` returns, by the port's words."""
    kept = [
        r
        for r in records
        if (status is None or r.status is status)
        and (name is None or r.saga_name == name)
        and (before is None or r.created_at < before)
        and (not waiting or (r.saga_id in _WAITING and not r.status.terminal))
    ]
    kept.sort(key=lambda r: (r.created_at, r.saga_id), reverse=True)
    return [r.saga_id for r in kept[:limit]]


class SagaQueriesContract(StoreFixtures):
    """``list_sagas``, ``count_by_status``, ``ids_with_prefix``,
    ``unfinished`` and ``claim`` page by page, as stores that hold millions
    of instances answer them (one statement per filter, counts kept as
    statuses change, ranges of the primary key)."""

    async def test_list_every_filter_combination(self, store: SagaStore) -> None:
        records = []
        for saga_id, saga, ended, created in _SHAPES:
            record = make_record(saga_id, name=saga, status=ended, created=created)
            await store.create(record, [])
            records.append(record)
        for saga_id in _WAITING:
            await store.mark_waiting(saga_id, "needs order v2")
        statuses = [None, SagaStatus.RUNNING, SagaStatus.SUCCEEDED]
        statuses += [SagaStatus.COMPENSATION_FAILED]  # none stored
        names = [None, "order", "refund", "nothing"]
        for status, name, before, waiting, limit in itertools.product(
            statuses, names, [None, 2.0, 4.5], [False, True], [2, 50]
        ):
            listed = await store.list_sagas(
                status=status,
                saga_name=name,
                created_before=before,
                waiting=waiting,
                limit=limit,
            )
            want = _expected(
                records,
                status=status,
                name=name,
                before=before,
                waiting=waiting,
                limit=limit,
            )
            assert [r.saga_id for r in listed] == want, (
                status,
                name,
                before,
                waiting,
                limit,
            )

    async def test_counts_follow_every_status_change(self, store: SagaStore) -> None:
        one = make_record("s1")
        two = make_record("s2")
        three = make_record("s3", name="refund")
        for record in (one, two, three):
            await store.create(record, [])
        assert await store.count_by_status() == {SagaStatus.RUNNING: 3}
        await store.save(replace(one, version=2, status=SagaStatus.COMPENSATING), 1, [])
        await store.save(replace(one, version=3, status=SagaStatus.COMPENSATED), 2, [])
        await store.save(replace(two, version=2, status=SagaStatus.FAILED), 1, [])
        await store.save(replace(two, version=3), 2, [])  # retried: running again
        await store.save(replace(three, version=2), 1, [])  # status unchanged
        await store.mark_waiting("s3", "needs refund v2")  # changes no status
        (claimed,) = await store.claim("w1", ["order"], lease=60)
        assert claimed.saga_id == "s2"
        assert await store.count_by_status() == {
            SagaStatus.RUNNING: 2,
            SagaStatus.COMPENSATED: 1,
        }
        assert await store.count_by_status("order") == {
            SagaStatus.RUNNING: 1,
            SagaStatus.COMPENSATED: 1,
        }
        assert await store.count_by_status("refund") == {SagaStatus.RUNNING: 1}
        await store.save(replace(two, version=5, status=SagaStatus.SUCCEEDED), 4, [])
        assert await store.count_by_status("order") == {
            SagaStatus.COMPENSATED: 1,
            SagaStatus.SUCCEEDED: 1,
        }
        assert await store.count_by_status("nothing") == {}

    async def test_ids_with_prefix_in_code_point_order(self, store: SagaStore) -> None:
        ids = [
            "ab",
            "abc",
            "abc/1",
            "abc/2",
            "abc-x",
            "abc0",
            "abcd",
            "abcé",
            "abc\U0010ffff",
            "abc\U0010ffffz",
            "abd",
            "ABC",
            "b",
        ]
        for saga_id in ids:
            await store.create(make_record(saga_id), [])
        with_abc = sorted(i for i in ids if i.startswith("abc"))
        assert with_abc[:3] == ["abc", "abc-x", "abc/1"]  # code points, not words
        assert await store.ids_with_prefix("abc", limit=20) == with_abc
        assert await store.ids_with_prefix("abc/") == ["abc/1", "abc/2"]
        assert await store.ids_with_prefix("abc", limit=2) == with_abc[:2]
        assert await store.ids_with_prefix("abc\U0010ffff") == [
            "abc\U0010ffff",
            "abc\U0010ffffz",
        ]
        assert await store.ids_with_prefix("") == sorted(ids)[:10]
        assert await store.ids_with_prefix("ab_") == []
        assert await store.ids_with_prefix("Abc") == []

    async def test_unfinished_filters_names_before_the_limit(
        self, store: SagaStore
    ) -> None:
        for n in range(30):  # older unfinished sagas of another definition
            await store.create(make_record(f"r{n:02d}", name="refund", created=n), [])
        for n in range(5):
            await store.create(make_record(f"o{n}", created=100.0 + n), [])
        assert await store.unfinished(["order"], limit=5) == [f"o{n}" for n in range(5)]
        assert await store.unfinished(limit=3) == ["r00", "r01", "r02"]

    async def test_unfinished_page_by_page(self, store: SagaStore) -> None:
        # same created_at for several: the id breaks the tie
        for saga_id, created in [("c", 2.0), ("a", 2.0), ("e", 1.0), ("b", 3.0)]:
            await store.create(make_record(saga_id, created=created), [])
        await store.create(make_record("d", created=2.0), [])
        await store.create(
            make_record("x", status=SagaStatus.SUCCEEDED, created=2.5), []
        )
        every = ["e", "a", "c", "d", "b"]
        assert await store.unfinished(["order"]) == every
        pages: list[str] = []
        after = None
        while page := await store.unfinished(["order"], limit=2, after=after):
            pages += page
            after = page[-1]
        assert pages == every
        assert await store.unfinished(after="x") == ["b"]  # a finished saga
        assert await store.unfinished(after="no such saga") == []

    async def test_claim_after_takes_the_next_batch(self, store: SagaStore) -> None:
        for n in range(5):
            await store.create(make_record(f"s{n}", created=float(n)), [])
        first = await store.claim("w1", ["order"], lease=60, limit=2)
        assert [r.saga_id for r in first] == ["s0", "s1"]
        # s2 is taken by a live worker meanwhile: the next batch skips it
        taken = await store.claim("w2", ["order"], lease=60, limit=1, after="s1")
        assert [r.saga_id for r in taken] == ["s2"]
        second = await store.claim("w1", ["order"], lease=60, limit=2, after="s1")
        assert [r.saga_id for r in second] == ["s3", "s4"]
        assert await store.claim("w1", ["order"], lease=60, after="s4") == []
        await store.release("w1", ["s0"])
        # an unleased saga before the cursor is left for the next pass
        assert await store.claim("w1", ["order"], lease=60, after="s1") == []
        (again,) = await store.claim("w1", ["order"], lease=60)
        assert again.saga_id == "s0"
