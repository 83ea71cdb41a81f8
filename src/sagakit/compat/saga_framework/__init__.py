"""``saga-framework`` (``from saga_framework import ...``) on sagakit's engine.

Switch the import, keep the classes::

    from sagakit.compat.saga_framework import (
        AsyncSaga, AsyncStep, BaseSaga, StatefulSaga, SyncStep,
        AbstractSagaStateRepository, saga_step_handler, auto_retry_then_reraise,
    )

Each saga object becomes a sagakit :class:`~sagakit.Saga` whose steps run
under sagakit's engine, with its state in a sagakit store (``store_url``).
``AsyncStep`` commands and ``saga_step_handler`` responses keep
saga-framework's Celery wire format (``task(saga_id, payload)``, replies
``{task}.response.success|failure``), so orchestrators and step handler
services can migrate one at a time.

Where sagakit differs from saga-framework 0.1, on purpose:

- a duplicate or late ``.response.success``/``.failure`` is dropped: the next
  step does not run again, callbacks do not fire twice;
- ``on_compensation_failure`` gets the step whose compensation failed as
  ``compensation_failed_step`` (the original passes the step that failed);
- ``StatefulSaga`` writes ``<step>.succeeded`` and ``<step>.failed`` (the
  original's handlers bypass the methods that would), and
  ``compensation_failed`` when the rollback stops;
- ``execute()`` only starts a saga, once per saga id; callbacks run after the
  engine committed the change they report, and an exception a callback raises
  is re-raised once the call ends (the saga's state is already safe).
"""

from __future__ import annotations

from sagakit.compat.saga_framework.async_saga import AsyncSaga, AsyncStep
from sagakit.compat.saga_framework.base import (
    BaseSaga,
    BaseStep,
    RemoteStepError,
    SyncStep,
)
from sagakit.compat.saga_framework.stateful import (
    AbstractSagaStateRepository,
    StatefulSaga,
)
from sagakit.compat.saga_framework.utils import (
    NO_ACTION,
    SagaErrorPayload,
    failure_task_name,
    format_exception_as_python_does,
    serialize_saga_error,
    success_task_name,
)

_CELERY_HELPERS = {
    "auto_retry_then_reraise",
    "close_sqlalchemy_db_connection_after_celery_task_ends",
    "no_response_saga_step_handler",
    "saga_step_handler",
    "send_saga_response",
}


def __getattr__(name: str) -> object:
    """The Celery helpers import celery: only when asked for."""
    if name in _CELERY_HELPERS:
        from sagakit.compat.saga_framework import celery_tasks  # noqa: PLC0415

        return getattr(celery_tasks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "NO_ACTION",
    "AbstractSagaStateRepository",
    "AsyncSaga",
    "AsyncStep",
    "BaseSaga",
    "BaseStep",
    "RemoteStepError",
    "SagaErrorPayload",
    "StatefulSaga",
    "SyncStep",
    "auto_retry_then_reraise",
    "close_sqlalchemy_db_connection_after_celery_task_ends",
    "failure_task_name",
    "format_exception_as_python_does",
    "no_response_saga_step_handler",
    "saga_step_handler",
    "send_saga_response",
    "serialize_saga_error",
    "success_task_name",
]
