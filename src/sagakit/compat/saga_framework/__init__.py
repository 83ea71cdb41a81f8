"""``saga-framework`` (``from saga_framework import ...``) on sagakit's engine.

Change the imports, keep the code: ``saga_framework`` becomes
``sagakit.compat.saga_framework``, and its modules keep their names
(``base_saga``, ``async_saga``, ``stateful_saga``, ``saga_handlers``,
``celery_utils``, ``utils``)::

    from sagakit.compat.saga_framework import (
        AsyncSaga, AsyncStep, BaseSaga, StatefulSaga, SyncStep,
        AbstractSagaStateRepository, saga_step_handler, auto_retry_then_reraise,
    )

The classes call the same methods with the same arguments, in the same
order, as saga-framework 0.1; Celery apps (or test doubles of them) see the
same ``send_task(name, args=[saga_id, payload], queue=...)`` calls and the
same ``app.task(name=..., bind=True)`` registrations, and response tasks read
nothing of the Celery task but its ``name``. Each saga runs on sagakit's
engine, its progress in a sagakit store (``store_url``,
``$SAGAKIT_DATABASE_URL``, or this process's memory by default: see
:mod:`~sagakit.compat.saga_framework.runtime`).

One difference, on purpose: a duplicate or late ``.response.success`` or
``.failure`` is dropped (saga-framework runs the next steps, and
``on_saga_success`` or the rollback, again). See ``docs/migrating.md``.
"""

from __future__ import annotations

from sagakit.compat.saga_framework.async_saga import AsyncSaga, AsyncStep
from sagakit.compat.saga_framework.base_saga import (
    BaseSaga,
    BaseStep,
    RemoteStepError,
    SyncStep,
)
from sagakit.compat.saga_framework.stateful_saga import (
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
    "auto_retry_then_reraise": "celery_utils",
    "close_sqlalchemy_db_connection_after_celery_task_ends": "celery_utils",
    "no_response_saga_step_handler": "saga_handlers",
    "saga_step_handler": "saga_handlers",
    "send_saga_response": "saga_handlers",
}


def __getattr__(name: str) -> object:
    """The Celery helpers import celery: only when asked for."""
    module = _CELERY_HELPERS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


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
