"""The runtime: the only place with loops, sleeps, threads and I/O calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagakit._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use: see sagakit._lazy
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

lazy_exports(
    __name__,
    {
        "sagakit.errors": ("error_info",),
        "sagakit.runtime.client": (
            "SagaClient",
            "StartOptions",
        ),
        "sagakit.runtime.clock": ("SystemClock",),
        "sagakit.runtime.orchestrator": ("Orchestrator",),
        "sagakit.runtime.recovery": ("Recovery", "RecoveryProgress"),
        "sagakit.runtime.result": ("SagaResult",),
        "sagakit.runtime.worker": ("Worker",),
    },
)
