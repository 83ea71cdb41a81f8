"""Step handler decorators, as ``saga_framework.saga_handlers``.

::

    @app.task(bind=True, name="restaurant_service.approve_ticket")
    @saga_step_handler(response_queue="create_order_saga_responses")
    def approve_ticket(self, saga_id, payload): ...

Once the task has run, ``saga_step_handler`` sends
``{task name}.response.success`` with what it returned, or
``{task name}.response.failure`` with the serialized exception (a Celery
``Retry`` passes through, so Celery retries the task first), through
``celery_task.app.send_task(name, args=[saga_id, payload], queue=...)``,
exactly as saga-framework does.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from sagakit._extras import needs_extra
from sagakit.compat.saga_framework.utils import (
    failure_task_name,
    serialize_saga_error,
    success_task_name,
)

with needs_extra("the saga-framework Celery helpers need celery", "compat"):
    from celery.exceptions import Retry

logger = logging.getLogger("sagakit.compat.saga_framework")

F = TypeVar("F", bound=Callable[..., Any])


def send_saga_response(
    celery_app: Any,
    response_task_name: str,
    response_queue_name: str,
    saga_id: Any,
    payload: Any,
) -> Any:
    """Send a response task to the orchestrator's queue."""
    return celery_app.send_task(
        response_task_name, args=[saga_id, payload], queue=response_queue_name
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
            except BaseException as exc:  # as saga-framework: every failure answers
                logger.exception(
                    "saga step handler failed",
                    extra={"action": "step_handler_failed", "saga_id": saga_id},
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
    """Reply to the orchestrator on ``response_queue`` once the task has run;
    put it between ``@app.task(bind=True, ...)`` and the function."""
    return _saga_step_handler(response_queue)


no_response_saga_step_handler = _saga_step_handler(response_queue=None)
"""Run the task like a step handler, but send no response."""


__all__ = ["no_response_saga_step_handler", "saga_step_handler", "send_saga_response"]
