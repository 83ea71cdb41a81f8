"""A heartbeat: renews a process's leases while it drives anything."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sagakit.errors import SagaNotFound, StoreError
from sagakit.ports.store import SagaRepository

logger = logging.getLogger("sagakit.runtime.orchestrator")


@dataclass(eq=False)
class Heartbeat:
    """Calls ``beat`` every ``every`` seconds while ``busy()`` holds.

    ``start`` when something begins to be driven; ``idle`` when something
    stops (the task ends at once if nothing is left, so a script's
    ``await orchestrator.run(...)`` leaves no task behind).
    """

    beat: Callable[[], Awaitable[object]]
    every: float
    busy: Callable[[], bool]
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _sleeping: bool = field(default=False, init=False)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def idle(self) -> None:
        if self._task is not None and self._sleeping and not self.busy():
            self.stop()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        try:
            while self.busy():
                self._sleeping = True
                await asyncio.sleep(self.every)
                self._sleeping = False
                try:
                    await self.beat()
                except StoreError as exc:
                    logger.warning(
                        "lease renewal failed",
                        extra={"action": "renew_failed", "error": str(exc)},
                    )
        finally:
            self._sleeping = False
            if self._task is asyncio.current_task():
                self._task = None


async def ended(store: SagaRepository, saga_ids: list[str]) -> list[str]:
    """Those of ``saga_ids`` that reached a terminal status: a renewal skips
    them, but their driver may not have seen its last commit yet."""
    found = []
    for saga_id in saga_ids:
        try:
            if (await store.get(saga_id)).status.terminal:
                found.append(saga_id)
        except SagaNotFound:
            pass
    return found
