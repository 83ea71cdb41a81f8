"""Pin the public API so that changes to it are deliberate."""

from __future__ import annotations

from importlib import resources

import pytest

import sagakit
from sagakit import errors


def test_all_is_pinned() -> None:
    assert sorted(sagakit.__all__) == [
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
    for name in sagakit.__all__:
        assert hasattr(sagakit, name), name


def test_every_error_is_a_saga_error_and_an_exception() -> None:
    for name in errors.__all__:
        kind = getattr(errors, name)
        assert issubclass(kind, errors.SagaError)
        assert issubclass(kind, Exception)
    assert issubclass(errors.DefinitionError, ValueError)
    # four situations, four classes: callers catch the one they mean
    distinct = (
        errors.StateError,
        errors.ConcurrencyError,
        errors.SagaNotFound,
        errors.SagaAlreadyExists,
        errors.DuplicateMessage,
    )
    for kind in distinct:
        assert [k for k in distinct if issubclass(kind, k)] == [kind]
    assert issubclass(errors.SagaNotFound, LookupError)
    assert issubclass(errors.CompensationFailed, errors.StepFailed)


def test_py_typed_is_shipped() -> None:
    assert resources.files("sagakit").joinpath("py.typed").is_file()


def test_status_values_are_lowercase_and_stored_verbatim() -> None:
    for status in sagakit.SagaStatus:
        assert status.value == status.value.lower()
        assert str(status) == status.value


def test_renamed_workflow_names_still_import_with_a_warning() -> None:
    from sagakit import workflow  # noqa: PLC0415 - the module under test

    with pytest.warns(DeprecationWarning, match="WorkflowStep"):
        assert workflow.Step is workflow.WorkflowStep  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="WorkflowCall"):
        assert workflow.StepCall is workflow.WorkflowCall  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="Nope"):
        _ = workflow.Nope  # type: ignore[attr-defined]
