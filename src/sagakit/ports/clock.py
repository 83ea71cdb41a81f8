"""The clock port: the runtime's only source of time and waiting."""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock may skip the wait)."""
