"""Celery helpers for step handler services (and orchestrators), as saga-framework.

::

    @app.task(bind=True, name="restaurant_service.approve_ticket",
              default_retry_delay=5)
    @saga_step_handler(response_queue="create_order_saga_responses")
    @auto_retry_then_reraise(max_retries=2)
    def approve_ticket(self, saga_id, payload): ...

``saga_step_handler`` replies ``{task}.response.success`` with what the task
returned (dicts, dataclasses and pydantic models are sent as JSON), or
``{task}.response.failure`` with the serialized exception; a Celery
``Retry`` passes through so Celery retries the task first.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from pydantic_core import to_jsonable_python

from sagakit._extras import needs_extra
from sagakit.compat.saga_framework.utils import (
    failure_task_name,
    serialize_saga_error,
    success_task_name,
)

with needs_extra("the saga-framework Celery helpers need celery", "compat"):
    from celery.exceptions import Retry
    from celery.signals import task_postrun

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def send_saga_response(
    celery_app: Any,
    response_task_name: str,
    response_queue_name: str,
    saga_id: Any,
    payload: Any,
) -> Any:
    """Send a response task (JSON) to the orchestrator's queue."""
    return celery_app.send_task(
        response_task_name,
        args=[saga_id, to_jsonable_python(payload)],
        queue=response_queue_name,
        serializer="json",
    )


def _saga_step_handler(response_queue: str | None) -> Callable[[F], F]:
    def inner(func: F) -> F:
        @functools.wraps(func)
        def wrapper(celery_task: Any, saga_id: Any, payload: Any) -> None:
            try:
                response = func(celery_task, saga_id, payload)
                task_name = success_task_name(celery_task.name)
            except Retry:
                raise  # Celery retries the task; no response yet
            except Exception as exc:
                logger.exception(
                    "saga step handler failed",
                    extra={
                        "action": "step_handler_failed",
                        "saga_id": saga_id,
                        "task": celery_task.name,
                    },
                )
                response = asdict(serialize_saga_error(exc))
                task_name = failure_task_name(celery_task.name)
            if response_queue:
                send_saga_response(
                    celery_task.app, task_name, response_queue, saga_id, response
                )

        return wrapper  # type: ignore[return-value]

    return inner


def saga_step_handler(response_queue: str) -> Callable[[F], F]:
    """Reply to the orchestrator on ``response_queue`` once the task has run.

    Put it between ``@app.task(bind=True, ...)`` and the function.
    """
    return _saga_step_handler(response_queue)


no_response_saga_step_handler = _saga_step_handler(response_queue=None)
"""Run the task like a step handler, but send no response."""


def auto_retry_then_reraise(
    max_retries: int = 3, **retry_kwargs: Any
) -> Callable[[F], F]:
    """Retry the (bound) Celery task ``max_retries`` times, then re-raise the
    last exception; put it below ``@app.task(bind=True)``."""

    def inner(func: F) -> F:
        @functools.wraps(func)
        def wrapper(celery_task: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return func(celery_task, *args, **kwargs)
            except Exception as exc:
                if celery_task.request.retries >= max_retries:
                    raise
                raise celery_task.retry(
                    exc=exc, max_retries=max_retries, **retry_kwargs
                ) from exc

        return wrapper  # type: ignore[return-value]

    return inner


def close_sqlalchemy_db_connection_after_celery_task_ends(
    sqlalchemy_session: Any,
) -> Callable[..., None]:
    """Call ``sqlalchemy_session.remove()`` (a ``scoped_session``) after every
    task this process runs; returns the signal receiver."""

    def close_session(*args: Any, **kwargs: Any) -> None:
        sqlalchemy_session.remove()

    task_postrun.connect(close_session, weak=False)
    return close_session


__all__ = [
    "auto_retry_then_reraise",
    "close_sqlalchemy_db_connection_after_celery_task_ends",
    "no_response_saga_step_handler",
    "saga_step_handler",
    "send_saga_response",
]
