"""The clock port, the runtime's only source of time and waiting, and the one
real clock: wall time and asyncio sleeps (standard library only, so every
layer above may default to it without importing the runtime)."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock may skip the wait)."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)
