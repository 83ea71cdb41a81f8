"""Ports: the protocols the runtime needs from the outside world."""

from __future__ import annotations

from sagakit.ports.clock import Clock
from sagakit.ports.store import HistoryEntry, SagaRecord, SagaStore

__all__ = ["Clock", "HistoryEntry", "SagaRecord", "SagaStore"]
