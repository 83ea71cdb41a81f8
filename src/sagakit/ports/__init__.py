"""Ports: the protocols the runtime needs from the outside world."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagakit._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use: see sagakit._lazy
    from sagakit.ports.clock import Clock
    from sagakit.ports.store import HistoryEntry, SagaRecord, SagaStore

__all__ = ["Clock", "HistoryEntry", "SagaRecord", "SagaStore"]

lazy_exports(
    __name__,
    {
        "sagakit.ports.clock": ("Clock",),
        "sagakit.ports.store": (
            "HistoryEntry",
            "SagaRecord",
            "SagaStore",
        ),
    },
)
