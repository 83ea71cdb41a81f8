"""Pin the public API so that changes to it are deliberate."""

from __future__ import annotations

from importlib import resources

import sagakit
from sagakit import errors


def test_all_is_pinned() -> None:
    assert sorted(sagakit.__all__) == [
        "CompensationFailed",
        "ConcurrencyError",
        "DefinitionError",
        "DictContext",
        "ErrorInfo",
        "Orchestrator",
        "Parallel",
        "RetryPolicy",
        "SQLiteStore",
        "Saga",
        "SagaError",
        "SagaNotFound",
        "SagaResult",
        "SagaStatus",
        "StateError",
        "Step",
        "StepFailed",
        "StepStatus",
        "StoreError",
        "TransportError",
        "__version__",
        "open_store",
    ]
    for name in sagakit.__all__:
        assert hasattr(sagakit, name), name


def test_every_error_is_a_saga_error_and_an_exception() -> None:
    for name in errors.__all__:
        kind = getattr(errors, name)
        assert issubclass(kind, errors.SagaError)
        assert issubclass(kind, Exception)
    assert issubclass(errors.DefinitionError, ValueError)
    assert issubclass(errors.ConcurrencyError, errors.StateError)
    assert issubclass(errors.CompensationFailed, errors.StepFailed)


def test_py_typed_is_shipped() -> None:
    assert resources.files("sagakit").joinpath("py.typed").is_file()


def test_status_values_are_lowercase_and_stored_verbatim() -> None:
    for status in sagakit.SagaStatus:
        assert status.value == status.value.lower()
        assert str(status) == status.value
