"""The whole sagakit exception tree.

::

    SagaError(Exception)
    ├── DefinitionError(SagaError, ValueError)   duplicate step, empty saga, bad pivot
    ├── StateError                               an event or request that does not fit
    ├── ConcurrencyError                         version conflict on save
    ├── SagaNotFound                             unknown saga id (also LookupError)
    ├── SagaAlreadyExists                        a saga id that is taken
    ├── DuplicateMessage                         a message consumed before
    ├── StepFailed                               a saga ended without succeeding
    │   └── CompensationFailed                   ... and a compensation failed too
    ├── StoreError                               driver error kept in ``__cause__``
    └── TransportError

Every public error derives from :class:`SagaError`, so ``except Exception`` and
``except SagaError`` both catch everything the library raises on purpose.
Messages name the saga id and the step where there is one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sagakit.engine.state import ErrorInfo


class SagaError(Exception):
    """Base class of every error sagakit raises on purpose."""


class DefinitionError(SagaError, ValueError):
    """A saga definition is invalid; raised when the definition is built."""


class StateError(SagaError):
    """An event or an operator's request does not fit the saga's current state
    (a stale reply, retrying a saga that succeeded, cancelling past the pivot)."""


class ConcurrencyError(SagaError):
    """Another writer saved the saga first (version conflict): this copy is
    stale; reload it before going on."""


class SagaNotFound(SagaError, LookupError):
    """No saga instance has the given id."""


class SagaAlreadyExists(SagaError):
    """A saga instance with this id exists already."""


class DuplicateMessage(SagaError):
    """A message was consumed before (inbox deduplication); nothing changed."""


class StepFailed(SagaError):
    """A saga did not succeed; carries the failed step and its original error.

    ``__cause__`` is the original exception when it was raised in this process;
    ``error`` is the recorded description, available after a restart too.
    """

    def __init__(
        self,
        message: str,
        *,
        saga_id: str,
        step: str | None,
        error: ErrorInfo | None,
        status: str,
    ) -> None:
        super().__init__(message)
        self.saga_id = saga_id
        self.step = step
        self.error = error
        self.status = status


class CompensationFailed(StepFailed):
    """A compensation failed after its retries; the saga needs an operator.

    Keeps both the original step error (``error``) and the compensation error
    (``compensation_error``).
    """

    def __init__(
        self,
        message: str,
        *,
        saga_id: str,
        step: str | None,
        error: ErrorInfo | None,
        status: str,
        compensation_step: str | None,
        compensation_error: ErrorInfo | None,
    ) -> None:
        super().__init__(
            message, saga_id=saga_id, step=step, error=error, status=status
        )
        self.compensation_step = compensation_step
        self.compensation_error = compensation_error


class StoreError(SagaError):
    """The store failed; the driver's exception is kept in ``__cause__``."""


class TransportError(SagaError):
    """A transport failed; the driver's exception is kept in ``__cause__``."""


__all__ = [
    "CompensationFailed",
    "ConcurrencyError",
    "DefinitionError",
    "DuplicateMessage",
    "SagaAlreadyExists",
    "SagaError",
    "SagaNotFound",
    "StateError",
    "StepFailed",
    "StoreError",
    "TransportError",
]
