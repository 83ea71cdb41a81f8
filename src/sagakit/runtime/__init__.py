"""The runtime: the only place with loops, sleeps, threads and I/O calls."""

from __future__ import annotations

from sagakit.runtime.clock import SystemClock
from sagakit.runtime.orchestrator import Orchestrator, error_info
from sagakit.runtime.result import SagaResult

__all__ = ["Orchestrator", "SagaResult", "SystemClock", "error_info"]
