"""The real clock, now beside the Clock port; importable here as before."""

from __future__ import annotations

from sagakit.ports.clock import SystemClock

__all__ = ["SystemClock"]
