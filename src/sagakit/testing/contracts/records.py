"""Records and fixtures the store contract suites share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sagakit import SagaStatus
from sagakit.engine.state import SagaState, StepState, StepStatus
from sagakit.ports.store import HistoryEntry, OutboxMessage, SagaRecord, SagaStore


def commits(store: SagaStore) -> int:
    """The adapter's commit counter (not part of the port)."""
    counted: int = getattr(store, "commits")  # noqa: B009 - not in the Protocol
    return counted


def make_record(
    saga_id: str,
    *,
    name: str = "order",
    status: SagaStatus = SagaStatus.RUNNING,
    key: str | None = None,
    created: float = 100.0,
    context: dict[str, Any] | None = None,
    deadline: float | None = None,
) -> SagaRecord:
    state = SagaState(
        saga_id=saga_id,
        saga_name=name,
        status=status,
        steps={"reserve": StepState(StepStatus.RUNNING, attempts=1)},
    )
    return SagaRecord(
        saga_id=saga_id,
        saga_name=name,
        status=status,
        version=1,
        state=state,
        context=context if context is not None else {"order_id": saga_id},
        idempotency_key=key,
        created_at=created,
        updated_at=created,
        deadline=deadline,
    )


def entry(saga_id: str, outcome: str, **kw: Any) -> HistoryEntry:
    return HistoryEntry(
        saga_id=saga_id,
        step=kw.pop("step", "reserve"),
        kind=kw.pop("kind", "action"),
        attempt=kw.pop("attempt", 1),
        outcome=outcome,
        started_at=kw.pop("started_at", 1.0),
        finished_at=kw.pop("finished_at", 1.5),
        **kw,
    )


# Far in the past and far in the future: "due" and "not yet due" without
# faking the clock ("now" is the database clock on PostgreSQL).
PAST = 1_000.0
FUTURE = 4_000_000_000.0


def message(
    message_id: str,
    *,
    available_at: float = PAST,
    body: bytes | None = None,
    saga_id: str | None = "s1",
    destination: str = "payments.commands",
) -> OutboxMessage:
    return OutboxMessage(
        message_id=message_id,
        destination=destination,
        body=body if body is not None else f"body of {message_id}".encode(),
        available_at=available_at,
        saga_id=saga_id,
    )


async def claim_race(
    claim: Callable[[SagaStore, str], Awaitable[list[str]]],
    store: SagaStore,
    peer: SagaStore,
) -> list[str]:
    """Two claimers (``store`` and ``peer``) take batches with ``claim(handle,
    owner)`` until nothing is left; checks that no item went to both and
    returns everything taken, sorted."""

    async def drain(handle: SagaStore, owner: str) -> list[str]:
        got: list[str] = []
        while batch := await claim(handle, owner):
            got.extend(batch)
            await asyncio.sleep(0)
        return got

    first, second = await asyncio.gather(drain(store, "w1"), drain(peer, "w2"))
    assert not set(first) & set(second)
    return sorted(first + second)


class StoreFixtures:
    """The fixtures every store contract asks for: ``store`` (fresh and empty)
    and ``peer`` (a second handle on the same data)."""

    @pytest.fixture
    def store(self) -> SagaStore:
        raise NotImplementedError

    @pytest.fixture
    def peer(self, store: SagaStore) -> SagaStore:
        """A second handle on the same data, as another worker process has.

        Override where the adapter can open one (own connection or pool)."""
        return store
