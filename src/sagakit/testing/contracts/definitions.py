"""Workflow and event store contracts, definition versions: the definition a
workflow instance or a tracked choreography started on, claims of one
definition, and the live counts ``sagakit deploy-check`` reads.

Mixed into :class:`~sagakit.testing.contracts.workflow_store.WorkflowStoreContract`
and :class:`~sagakit.testing.contracts.event_store.EventStoreContract`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventOutcome,
    EventRecord,
    EventStore,
    Progress,
)
from sagakit.ports.workflow_store import (
    WorkflowRecord,
    WorkflowStatus,
    WorkflowStore,
)
from sagakit.testing.contracts.workflow_records import APP, STEPS, line, make


def started_on(
    instance_id: str, version: int, fingerprint: str | None, **kw: Any
) -> WorkflowRecord:
    """A pending instance of ``APP`` due at 100, started on that definition."""
    return replace(
        make(instance_id, **kw), definition_version=version, fingerprint=fingerprint
    )


class WorkflowVersionsContract:
    """``definition_version`` and ``fingerprint`` on workflow records, claims
    and ``next_due`` of one definition, and ``live_workflows``."""

    async def test_an_instance_keeps_the_definition_it_started_on(
        self, store: WorkflowStore
    ) -> None:
        record = started_on("w1", 3, "abc")
        await store.create(record, [])
        assert await store.get(APP, "w1") == record
        moved = replace(record, version=2, definition_version=4, fingerprint="def")
        await store.save(moved, 1, [line("w1", "saved")])
        assert await store.get(APP, "w1") == moved
        (listed,) = await store.list_workflows()
        assert (listed.definition_version, listed.fingerprint) == (4, "def")

    async def test_a_claim_of_one_definition_takes_only_its_instances(
        self, store: WorkflowStore
    ) -> None:
        await store.create(started_on("same", 1, "one", due_at=10.0), [])
        await store.create(started_on("unknown", 1, None, due_at=20.0), [])
        await store.create(started_on("changed", 1, "other", due_at=30.0), [])
        await store.create(started_on("newer", 2, "two", due_at=40.0), [])
        assert await store.next_due(APP, STEPS, version=2, fingerprint="two") == 40.0
        claimed = await store.claim(
            APP, "w", STEPS, now=200.0, lease=10.0, version=1, fingerprint="one"
        )
        assert [r.instance_id for r in claimed] == ["same", "unknown"]
        assert await store.next_due(APP, STEPS, version=1, fingerprint="one") == 210.0
        expired = await store.claim(APP, "w2", STEPS, now=300.0, lease=10.0, version=2)
        assert [r.instance_id for r in expired] == ["newer"]
        rest = await store.claim(APP, "w3", STEPS, now=300.0, lease=10.0, version=1)
        assert [r.instance_id for r in rest] == ["same", "unknown", "changed"]

    async def test_live_workflows_count_unfinished_instances_by_definition(
        self, store: WorkflowStore
    ) -> None:
        assert await store.live_workflows() == {}
        await store.create(started_on("a", 1, "one"), [])
        await store.create(started_on("b", 1, "one"), [])
        await store.create(started_on("c", 1, "one", step="credit"), [])
        await store.create(started_on("d", 2, None), [])
        await store.create(started_on("e", 1, "one", app="other"), [])
        done = WorkflowStatus.SUCCEEDED
        await store.create(started_on("f", 1, "one", status=done), [])
        await store.claim(APP, "w", STEPS, now=200.0, lease=10.0, version=2)
        assert await store.live_workflows() == {
            (APP, 1, "one", "debit"): 2,
            (APP, 1, "one", "credit"): 1,
            (APP, 2, None, "debit"): 1,
            ("other", 1, "one", "debit"): 1,
        }


def _line(cid: str, event_type: str, at: float) -> EventRecord:
    return EventRecord(
        correlation_id=cid,
        choreography="order",
        service="orders",
        event_type=event_type,
        message_id=f"{cid}-{event_type}",
        outcome=EventOutcome.PUBLISHED,
        recorded_at=at,
    )


def _progress(version: int, fingerprint: str | None) -> Progress:
    def classify(seen: frozenset[str]) -> ChoreographyStatus:
        if "order.confirmed" in seen:
            return ChoreographyStatus.SUCCEEDED
        return ChoreographyStatus.IN_PROGRESS

    return Progress("order", 10.0, classify, version, fingerprint)


class ChoreographyVersionsContract:
    """``definition_version`` and ``fingerprint`` on tracked choreographies,
    and ``live_choreographies``."""

    async def test_a_choreography_keeps_the_definition_it_started_on(
        self, store: EventStore
    ) -> None:
        assert await store.live_choreographies() == {}
        await store.record_event(_line("a", "order.created", 1.0), _progress(2, "x"))
        # a later event of another version does not move the row's definition
        await store.record_event(_line("a", "stock.reserved", 2.0), _progress(3, "y"))
        tracked = await store.tracked("a")
        assert tracked is not None
        assert (tracked.definition_version, tracked.fingerprint) == (2, "x")
        assert (tracked.updated_at, tracked.status) == (
            2.0,
            ChoreographyStatus.IN_PROGRESS,
        )
        await store.record_event(_line("b", "order.created", 1.0), _progress(2, "x"))
        await store.record_event(_line("c", "order.created", 1.0), _progress(1, None))
        await store.record_event(_line("d", "order.confirmed", 1.0), _progress(2, "x"))
        await store.mark_stalled(now=100.0)  # a stalled one is still live
        assert await store.live_choreographies() == {
            ("order", 2, "x"): 2,
            ("order", 1, None): 1,
        }
        (listed,) = await store.list_tracked(status=ChoreographyStatus.SUCCEEDED)
        assert (listed.definition_version, listed.fingerprint) == (2, "x")

    async def test_a_waiting_event_is_not_progress(self, store: EventStore) -> None:
        line = replace(
            _line("w", "order.created", 1.0),
            outcome=EventOutcome.WAITING,
            detail="needs order v1, not registered here (have v2)",
        )
        assert await store.record_event(line, _progress(1, None)) is None
        assert await store.tracked("w") is None
        assert await store.timeline("w") == [line]
