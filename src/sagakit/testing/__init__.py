"""Helpers for testing sagas.

* :class:`FakeClock` and :func:`in_memory_orchestrator`: run sagas without
  waiting for real time;
* :func:`check_saga`: run a saga once per failure point (every step failing,
  every compensation failing, a crash before and after every commit) and check
  the saga invariants each time;
* :class:`Testbed`: an orchestrator, a fake clock and an in-process transport
  with participants, for one test;
* a pytest plugin (:mod:`sagakit.testing.pytest_plugin`) with fixtures for
  all of these.

The names load on first use, so pytest loading the plugin imports nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagakit._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use: see sagakit._lazy
    from sagakit.testing.check import (
        CheckReport,
        PointResult,
        check_saga,
        check_saga_sync,
    )
    from sagakit.testing.clock import FakeClock, in_memory_orchestrator
    from sagakit.testing.invariants import Violation
    from sagakit.testing.points import (
        Crash,
        FailurePoint,
        InjectedFailure,
        Injection,
    )
    from sagakit.testing.run_record import CrashSimulated, Effect
    from sagakit.testing.testbed import Testbed

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
    "Testbed",
    "Violation",
    "check_saga",
    "check_saga_sync",
    "in_memory_orchestrator",
]

lazy_exports(
    __name__,
    {
        "sagakit.testing.check": (
            "CheckReport",
            "PointResult",
            "check_saga",
            "check_saga_sync",
        ),
        "sagakit.testing.clock": ("FakeClock", "in_memory_orchestrator"),
        "sagakit.testing.run_record": ("CrashSimulated", "Effect"),
        "sagakit.testing.invariants": ("Violation",),
        "sagakit.testing.points": (
            "Crash",
            "FailurePoint",
            "InjectedFailure",
            "Injection",
        ),
        "sagakit.testing.testbed": ("Testbed",),
    },
)
