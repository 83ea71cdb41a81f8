"""Helpers for testing sagas.

* :class:`FakeClock` and :func:`in_memory_orchestrator`: run sagas without
  waiting for real time;
* :func:`check_saga`: run a saga once per failure point (every step failing,
  every compensation failing, a crash before and after every commit) and check
  the saga invariants each time.
"""

from __future__ import annotations

from sagakit.testing.check import CheckReport, PointResult, check_saga, check_saga_sync
from sagakit.testing.clock import FakeClock, in_memory_orchestrator
from sagakit.testing.harness import CrashSimulated, Effect
from sagakit.testing.invariants import Violation
from sagakit.testing.points import Crash, FailurePoint, InjectedFailure, Injection

__all__ = [
    "CheckReport",
    "Crash",
    "CrashSimulated",
    "Effect",
    "FailurePoint",
    "FakeClock",
    "InjectedFailure",
    "Injection",
    "PointResult",
    "Violation",
    "check_saga",
    "check_saga_sync",
    "in_memory_orchestrator",
]
