"""The whole sagakit exception tree.

::

    SagaError(Exception)
    ├── DefinitionError(SagaError, ValueError)   duplicate step, empty saga, bad pivot
    ├── StateError                               an event or request that does not fit
    ├── ConcurrencyError                         version conflict on save
    ├── SagaNotFound                             unknown saga id (also LookupError)
    ├── SagaAlreadyExists                        a saga id that is taken
    ├── FatalError                               raised by a step: never retried
    ├── DuplicateMessage                         a message consumed before
    ├── StepFailed                               a saga ended without succeeding
    │   └── CompensationFailed                   ... and a compensation failed too
    ├── StoreError                               driver error kept in ``__cause__``;
    │                                            ``read_only``: retrying cannot help
    ├── LockUnavailable                          a save's locks are held by others
    ├── TransportError
    ├── HookError                                a hook refused a notification
    └── ResultError                              a step result missing or invalid

Every public error derives from :class:`SagaError`, so ``except Exception`` and
``except SagaError`` both catch everything the library raises on purpose.
Messages name the saga id and the step where there is one.

:class:`ErrorInfo` is an error once recorded (stored, shown after a restart) and
:func:`error_info` makes one from an exception. They live here, at the bottom
of the layer map, so every layer can record an error without importing the
engine or the runtime.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

_TRACEBACK_FRAMES = 8
_TRACEBACK_CHARS = 4000


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A recorded error: enough to report it after the process is gone."""

    type: str
    message: str
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ErrorInfo | None:
        if data is None:
            return None
        return cls(data["type"], data["message"], data.get("traceback"))

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


def error_info(exc: BaseException) -> ErrorInfo:
    """Describe an exception so it can be stored and shown after a restart."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    # frame lines only: no source lookup, which costs more than the step itself
    frames = traceback.StackSummary.extract(
        traceback.walk_tb(exc.__traceback__), lookup_lines=False
    )[-_TRACEBACK_FRAMES:]
    lines = [f'  File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames]
    tb = "\n".join(["Traceback (most recent call last):", *lines, f"{name}: {exc}"])
    return ErrorInfo(name, str(exc), tb[-_TRACEBACK_CHARS:])


class SagaError(Exception):
    """Base class of every error sagakit raises on purpose."""


class DefinitionError(SagaError, ValueError):
    """A saga definition is invalid; raised when the definition is built."""


class DefinitionUnavailable(SagaError):
    """The definition an instance started on is not registered in this
    process, or changed shape since: this process does not drive it.
    ``reason`` is the one line shown with the waiting instance."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StateError(SagaError):
    """An event or an operator's request does not fit the saga's current state
    (a stale reply, retrying a saga that succeeded, cancelling past the pivot)."""


class ConcurrencyError(SagaError):
    """Another writer saved the saga first (version conflict): this copy is
    stale; reload it before going on."""


class SagaNotFound(SagaError, LookupError):
    """No saga instance has the given id."""


class SagaAlreadyExists(SagaError):
    """An instance with this id exists already: starting it again (with
    another idempotency key, or a workflow ``start`` with another call) is
    refused, on every store and however the starts race.

    ``saga_id`` is the id (a workflow's instance id), ``status`` the existing
    instance's status (``None`` if it could not be read: it was deleted
    meanwhile) and ``app`` the workflow app (``None`` for a saga).
    """

    def __init__(
        self,
        message: str,
        *,
        saga_id: str,
        status: str | None,
        app: str | None = None,
    ) -> None:
        super().__init__(message)
        self.saga_id = saga_id
        self.status = status
        self.app = app


class FatalError(SagaError):
    """Raise it from a step to fail at once: it is never retried.

    A workflow step (:mod:`sagakit.workflow`) that raises it ends its instance
    ``failed`` with the message recorded, whatever ``max_attempts`` says; a
    saga step, a compensation or a participant handler that raises it gives
    up at once too, whatever its ``RetryPolicy`` says. Subclass it for
    errors of your own that retrying cannot fix (a declined card, a closed
    account).
    """


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
    (``compensation_error``, the first one to fail); ``compensation_errors``
    lists (step, error) of every compensation that failed for good (more
    than one when the saga's rollback policy is ``continue``, or when
    compensations running together failed).
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
        compensation_errors: tuple[tuple[str, ErrorInfo], ...] = (),
    ) -> None:
        super().__init__(
            message, saga_id=saga_id, step=step, error=error, status=status
        )
        self.compensation_step = compensation_step
        self.compensation_error = compensation_error
        if not compensation_errors and compensation_step and compensation_error:
            compensation_errors = ((compensation_step, compensation_error),)
        self.compensation_errors = compensation_errors


_READ_ONLY_SQLITE = frozenset(
    {
        3,  # SQLITE_PERM: access permission denied
        8,  # SQLITE_READONLY: attempt to write a readonly database
        776,  # SQLITE_READONLY_ROLLBACK: a hot journal it may not roll back
        1032,  # SQLITE_READONLY_DBMOVED: the file was moved or deleted
        1544,  # SQLITE_READONLY_DIRECTORY: the directory is read-only
    }
)
"""SQLite's (extended) result codes that retrying cannot fix: the file
refuses this process's writes. READONLY_RECOVERY and READONLY_CANTLOCK are
not among them: they pass once another connection is done."""
_READ_ONLY_SQLSTATES = frozenset(
    {
        "25006",  # read_only_sql_transaction: a standby, or a read-only setting
        "42501",  # insufficient_privilege: the role may not write
    }
)


_CAUSES_LOOKED_AT = 8


class StoreError(SagaError):
    """The store failed; the driver's exception is kept in ``__cause__``."""

    @property
    def read_only(self) -> bool:
        """The database refuses this process's writes, and retrying will not
        change that: a read-only SQLite file or directory, a read-only
        PostgreSQL transaction (a standby, ``default_transaction_read_only``)
        or a role without the privilege. Retries give up at once on it."""
        cause = self.__cause__
        for _ in range(_CAUSES_LOOKED_AT):  # a chain may loop back
            if cause is None:
                return False
            if getattr(cause, "sqlite_errorcode", None) in _READ_ONLY_SQLITE:
                return True
            if getattr(cause, "sqlstate", None) in _READ_ONLY_SQLSTATES:
                return True
            cause = cause.__cause__
        return False


class LockUnavailable(SagaError):
    """A save asked for semantic locks that other sagas hold (or queue for
    first), or to wait where waiting would deadlock; nothing was written.

    ``holders`` names, by busy key, the saga in the way; ``cycle`` lists the
    other sagas of the wait-for cycle that waiting would close (empty unless
    it is a deadlock). The runtime turns it into ``LocksBusy``.
    """

    def __init__(
        self,
        message: str,
        *,
        saga_id: str,
        holders: dict[str, str],
        cycle: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.saga_id = saga_id
        self.holders = holders
        self.cycle = cycle


class TransportError(SagaError):
    """A transport failed; the driver's exception is kept in ``__cause__``."""


class HookError(SagaError):
    """A hook did not take a notification (a webhook answered an error, did
    not answer, or a callback raised); the notifier tries again later."""


class ResultError(SagaError, LookupError):
    """A step result asked for is not there, or does not validate against its
    model: ``results.get`` of a step that has not completed, or a step's
    return value that does not match its ``output`` model. Raised in a step,
    it fails the attempt without retry (the outcome would be the same)."""

    def __init__(self, message: str, *, saga_id: str, step: str) -> None:
        super().__init__(message)
        self.saga_id = saga_id
        self.step = step


__all__ = [
    "CompensationFailed",
    "ConcurrencyError",
    "DefinitionError",
    "DefinitionUnavailable",
    "DuplicateMessage",
    "FatalError",
    "HookError",
    "LockUnavailable",
    "ResultError",
    "SagaAlreadyExists",
    "SagaError",
    "SagaNotFound",
    "StateError",
    "StepFailed",
    "StoreError",
    "TransportError",
]
