"""sagakit: distributed transactions with the saga pattern.

Define a :class:`Saga` of :class:`Step` s (and :class:`Parallel` groups), then
run it with an :class:`Orchestrator` on a durable store::

    saga = Saga("order", [Step("reserve", reserve, compensate=release), ...])
    result = await Orchestrator(SQLiteStore("sagakit.db")).run(saga, {"id": 1})
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sagakit._lazy import lazy_exports
from sagakit.errors import (
    CompensationFailed,
    ConcurrencyError,
    DefinitionError,
    ErrorInfo,
    FatalError,
    ResultError,
    SagaAlreadyExists,
    SagaError,
    SagaNotFound,
    StateError,
    StepFailed,
    StoreError,
    TransportError,
)

if TYPE_CHECKING:  # imported on first use: see sagakit._lazy
    from sagakit.adapters.store import open_store
    from sagakit.adapters.store.sqlite import SQLiteStore
    from sagakit.definition import (
        DictContext,
        Lock,
        Parallel,
        RetryPolicy,
        Saga,
        Step,
        SubSaga,
    )
    from sagakit.engine.results import Results
    from sagakit.engine.state import SagaStatus, StepStatus
    from sagakit.runtime.orchestrator import Orchestrator
    from sagakit.runtime.result import SagaResult

__version__ = "0.1.0.dev0"

__all__ = [
    "CompensationFailed",
    "ConcurrencyError",
    "DefinitionError",
    "DictContext",
    "ErrorInfo",
    "FatalError",
    "Lock",
    "Orchestrator",
    "Parallel",
    "ResultError",
    "Results",
    "RetryPolicy",
    "SQLiteStore",
    "Saga",
    "SagaAlreadyExists",
    "SagaError",
    "SagaNotFound",
    "SagaResult",
    "SagaStatus",
    "StateError",
    "Step",
    "StepFailed",
    "StepStatus",
    "StoreError",
    "SubSaga",
    "TransportError",
    "__version__",
    "open_store",
]

lazy_exports(
    __name__,
    {
        "sagakit.adapters.store": ("open_store",),
        "sagakit.adapters.store.sqlite": ("SQLiteStore",),
        "sagakit.definition": (
            "DictContext",
            "Lock",
            "Parallel",
            "RetryPolicy",
            "Saga",
            "Step",
            "SubSaga",
        ),
        "sagakit.engine.results": ("Results",),
        "sagakit.engine.state": ("SagaStatus", "StepStatus"),
        "sagakit.runtime.orchestrator": ("Orchestrator",),
        "sagakit.runtime.result": ("SagaResult",),
    },
)

logging.getLogger(__name__).addHandler(logging.NullHandler())
