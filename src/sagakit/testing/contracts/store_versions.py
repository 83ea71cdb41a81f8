"""Store contract, definition versions: the definition an instance needs,
claims by definition key, and instances waiting for a definition."""

from __future__ import annotations

from dataclasses import replace

from sagakit import SagaStatus
from sagakit.ports.store import SagaRecord, SagaStore
from sagakit.testing.contracts.records import StoreFixtures, entry, make_record


def versioned(
    saga_id: str, version: int, fingerprint: str | None, **kw: object
) -> SagaRecord:
    return replace(
        make_record(saga_id, **kw),  # type: ignore[arg-type]
        definition_version=version,
        fingerprint=fingerprint,
    )


class SagaVersionsContract(StoreFixtures):
    """``definition_version``, ``fingerprint`` and ``waiting`` on records,
    claims by definition key, ``stranded``, ``mark_waiting`` and
    ``live_definitions``."""

    async def test_a_record_keeps_its_definition_version_and_fingerprint(
        self, store: SagaStore
    ) -> None:
        await store.create(versioned("s1", 3, "abc"), [])
        await store.create(make_record("s2"), [])
        got = await store.get("s1")
        assert (got.definition_version, got.fingerprint, got.waiting) == (
            3,
            "abc",
            None,
        )
        assert got.definition_key == "order:3:abc"
        await store.save(replace(got, version=2), 1, [entry("s1", "saved")])
        saved = await store.get("s1")
        assert (saved.definition_version, saved.fingerprint) == (3, "abc")
        plain = await store.get("s2")
        assert (plain.definition_version, plain.fingerprint) == (1, None)
        listed = await store.list_sagas()
        assert {r.saga_id: r.definition_version for r in listed} == {"s1": 3, "s2": 1}

    async def test_a_claim_by_definition_key_takes_only_that_definition(
        self, store: SagaStore
    ) -> None:
        await store.create(versioned("v1", 1, "one", created=1.0), [])
        await store.create(versioned("v2", 2, "two", created=2.0), [])
        await store.create(versioned("changed", 2, "other", created=3.0), [])
        await store.create(versioned("old", 2, None, created=4.0), [])
        claimed = await store.claim("w1", ["order:2:two", "order:2"], lease=60)
        assert [r.saga_id for r in claimed] == ["v2", "old"]
        assert await store.claim("w2", ["order:2:two", "order:2"], lease=60) == []

    async def test_stranded_instances_are_reported_once_and_a_claim_clears(
        self, store: SagaStore
    ) -> None:
        keys = ["order:2", "order:2:two"]
        await store.create(versioned("v1", 1, "one", created=1.0), [])
        await store.create(versioned("v2", 2, "two", created=2.0), [])
        await store.create(
            versioned("held", 1, "one", created=3.0), [], owner="w", lease=60
        )
        await store.create(
            versioned("done", 1, "one", status=SagaStatus.SUCCEEDED, created=4.0), []
        )
        await store.create(versioned("other", 1, "one", name="trip"), [])
        stranded = await store.stranded(["order"], keys)
        assert [r.saga_id for r in stranded] == ["v1"]
        await store.mark_waiting("v1", "needs order v1")
        await store.mark_waiting("done", "ignored: it ended")
        assert (await store.get("v1")).waiting == "needs order v1"
        assert (await store.get("v1")).version == 1
        assert (await store.get("done")).waiting is None
        assert await store.stranded(["order"], keys) == []
        (claimed,) = await store.claim("w1", ["order:1:one"], lease=60)
        assert claimed.saga_id == "v1"
        assert claimed.waiting is None
        assert (await store.get("v1")).waiting is None

    async def test_a_save_replaces_the_definition(self, store: SagaStore) -> None:
        record = versioned("s1", 1, "one")
        await store.create(record, [])
        moved = replace(record, version=2, definition_version=2, fingerprint="two")
        await store.save(moved, 1, [entry("s1", "migrated")])
        got = await store.get("s1")
        assert (got.definition_version, got.fingerprint) == (2, "two")

    async def test_a_save_clears_the_waiting_reason(self, store: SagaStore) -> None:
        record = versioned("s1", 1, "one")
        await store.create(record, [])
        await store.mark_waiting("s1", "needs order v1")
        await store.save(replace(record, version=2), 1, [entry("s1", "moved")])
        assert (await store.get("s1")).waiting is None

    async def test_live_definitions_counts_unfinished_instances(
        self, store: SagaStore
    ) -> None:
        await store.create(versioned("a", 1, "one"), [])
        await store.create(versioned("b", 1, "one"), [])
        await store.create(versioned("c", 2, None), [])
        await store.create(versioned("d", 1, "one", status=SagaStatus.COMPENSATED), [])
        assert await store.live_definitions() == {
            ("order", 1, "one"): 2,
            ("order", 2, None): 1,
        }

    async def test_listing_only_the_waiting_instances(self, store: SagaStore) -> None:
        await store.create(versioned("a", 1, "one", created=1.0), [])
        await store.create(versioned("b", 1, "one", created=2.0), [])
        await store.create(versioned("c", 1, "one", name="trip", created=3.0), [])
        await store.create(versioned("d", 2, "two", created=4.0), [])
        for saga_id in ("a", "b", "c"):
            await store.mark_waiting(saga_id, "needs v1")
        listed = await store.list_sagas(waiting=True)
        assert [r.saga_id for r in listed] == ["c", "b", "a"]
        assert {r.waiting for r in listed} == {"needs v1"}
        only = await store.list_sagas(waiting=True, saga_name="order", limit=1)
        assert [r.saga_id for r in only] == ["b"]
        assert len(await store.list_sagas()) == 4
        assert await store.list_sagas(waiting=True, status=SagaStatus.FAILED) == []
