"""Store contract, repository and queries: create, save, get, history,
listings and counts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sagakit import ConcurrencyError, SagaNotFound, SagaStatus
from sagakit.engine.state import ErrorInfo, StepStatus
from sagakit.errors import SagaAlreadyExists
from sagakit.ports.store import Created, SagaStore
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
