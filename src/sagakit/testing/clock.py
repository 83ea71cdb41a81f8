"""A time-skipping clock and an in-memory orchestrator for tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from sagakit.adapters.store.sqlite import SQLiteStore
from sagakit.definition.saga import Saga
from sagakit.runtime.orchestrator import Orchestrator


class FakeClock:
    """A clock whose sleeps return at once and move time forward.

    A 5-minute backoff takes no real time; ``now()`` reflects the skipped time.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self._now += seconds
        await asyncio.sleep(0)


def in_memory_orchestrator(
    sagas: Iterable[Saga[Any]] = (), *, clock: FakeClock | None = None
) -> Orchestrator:
    """An orchestrator on an in-memory SQLite store and a fake clock."""
    return Orchestrator(SQLiteStore(":memory:"), sagas, clock=clock or FakeClock())
