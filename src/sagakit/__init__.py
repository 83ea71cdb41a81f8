"""sagakit: distributed transactions with the saga pattern.

Define a :class:`Saga` of :class:`Step` s (and :class:`Parallel` groups), then
run it with an :class:`Orchestrator` on a durable store::

    saga = Saga("order", [Step("reserve", reserve, compensate=release), ...])
    result = await Orchestrator(SQLiteStore("sagakit.db")).run(saga, {"id": 1})
"""

from __future__ import annotations

import logging

from sagakit.adapters.store import open_store
from sagakit.adapters.store.sqlite import SQLiteStore
from sagakit.definition import (
    DictContext,
    Parallel,
    RetryPolicy,
    Saga,
    Step,
    SubSaga,
)
from sagakit.engine.results import Results
from sagakit.engine.state import ErrorInfo, SagaStatus, StepStatus
from sagakit.errors import (
    CompensationFailed,
    ConcurrencyError,
    DefinitionError,
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
from sagakit.runtime import Orchestrator, SagaResult

__version__ = "0.1.0.dev0"

__all__ = [
    "CompensationFailed",
    "ConcurrencyError",
    "DefinitionError",
    "DictContext",
    "ErrorInfo",
    "FatalError",
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

logging.getLogger(__name__).addHandler(logging.NullHandler())
