"""The runtime: the only place with loops, sleeps, threads and I/O calls."""

from __future__ import annotations

from sagakit.errors import error_info
from sagakit.runtime.client import SagaClient, StartOptions
from sagakit.runtime.clock import SystemClock
from sagakit.runtime.orchestrator import Orchestrator
from sagakit.runtime.recovery import Recovery, RecoveryProgress
from sagakit.runtime.result import SagaResult
from sagakit.runtime.worker import Worker

__all__ = [
    "Orchestrator",
    "Recovery",
    "RecoveryProgress",
    "SagaClient",
    "SagaResult",
    "StartOptions",
    "SystemClock",
    "Worker",
    "error_info",
]
