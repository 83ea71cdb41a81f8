"""``AsyncSaga`` and ``AsyncStep``, as ``saga_framework.async_saga``: steps
carried out by other services through Celery.

An :class:`AsyncStep`'s action sends the step handler's Celery task
(``send_message_to_other_service``, which calls ``celery_app.send_task`` as
saga-framework does), then the saga waits. The orchestrator's Celery worker
registers ``{base_task_name}.response.success`` and ``.failure`` tasks
(:meth:`AsyncSaga.register_async_step_handlers`); each builds the saga object
for the id it gets and calls :meth:`AsyncSaga.on_async_step_success` or
:meth:`~AsyncSaga.on_async_step_failure`, which apply the reply to the saga's
newest run (see :mod:`~sagakit.compat.saga_framework.flow`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sagakit.compat.saga_framework.base_saga import BaseSaga, BaseStep
from sagakit.compat.saga_framework.utils import (
    NO_ACTION,
    failure_task_name,
    success_task_name,
)

logger = logging.getLogger("sagakit.compat.saga_framework")


class AsyncStep(BaseStep):
    """A step handled by another service: a Celery task and its response."""

    def __init__(
        self,
        base_task_name: str,
        queue: str,
        on_success: Callable[..., Any] = NO_ACTION,
        on_failure: Callable[..., Any] = NO_ACTION,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self.base_task_name = base_task_name
        self.queue = queue
        self.on_success = on_success
        self.on_failure = on_failure
        super().__init__(*args, **kwargs)


class AsyncSaga(BaseSaga):
    """A saga whose async steps are Celery tasks of other services."""

    celery_app: Any = None

    def __init__(self, celery_app: Any, *args: Any, **kwargs: Any) -> None:
        self.celery_app = celery_app
        super().__init__(*args, **kwargs)

    def on_async_step_success(self, step: AsyncStep, payload: Any) -> None:
        """The step handler succeeded: ``step.on_success``, then the steps
        that follow (or ``on_saga_success``). A reply the saga does not wait
        for (a duplicate) changes nothing."""
        self._received(step, True, payload)

    def on_async_step_failure(self, step: AsyncStep, payload: Any) -> None:
        """The step handler failed: ``step.on_failure``, ``compensate``, then
        the rollback. A reply the saga does not wait for changes nothing."""
        self._received(step, False, payload)

    def _received(self, step: AsyncStep, ok: bool, payload: Any) -> None:
        logger.info(
            "Saga %s: running %s for %r step",
            self.saga_id,
            "on_success" if ok else "on_failure",
            step.name,
            extra={"action": "reply_received", "saga_id": self.saga_id},
        )
        self._flow.receive(step, ok, payload)

    @property
    def async_steps(self) -> list[AsyncStep]:
        return [step for step in self.steps if isinstance(step, AsyncStep)]

    def get_async_step_by_success_task_name(self, success_task_name_: str) -> AsyncStep:
        for step in self.async_steps:
            if success_task_name(step.base_task_name) == success_task_name_:
                return step
        raise KeyError(f"no step found with success task name {success_task_name_}")

    def get_async_step_by_failure_task_name(self, failure_task_name_: str) -> AsyncStep:
        for step in self.async_steps:
            if failure_task_name(step.base_task_name) == failure_task_name_:
                return step
        raise KeyError(f"no step found with failure task name {failure_task_name_}")

    @classmethod
    def register_async_step_handlers(cls, celery_app: Any) -> None:
        """Register the ``.response.success|failure`` task of every async step."""
        template = cls(None, None)
        for step in template.async_steps:
            cls.register_success_handler_for_step(celery_app, step)
            cls.register_failure_handler_for_step(celery_app, step)

    @classmethod
    def register_success_handler_for_step(
        cls, celery_app: Any, step: AsyncStep
    ) -> None:
        def on_success_handler(celery_task: Any, saga_id: Any, payload: Any) -> None:
            saga = cls(celery_app=celery_app, saga_id=saga_id)
            step_ = saga.get_async_step_by_success_task_name(celery_task.name)
            saga.on_async_step_success(step_, payload)

        celery_app.task(name=success_task_name(step.base_task_name), bind=True)(
            on_success_handler
        )

    @classmethod
    def register_failure_handler_for_step(
        cls, celery_app: Any, step: AsyncStep
    ) -> None:
        def on_failure_handler(celery_task: Any, saga_id: Any, payload: Any) -> None:
            saga = cls(celery_app, saga_id)
            step_ = saga.get_async_step_by_failure_task_name(celery_task.name)
            saga.on_async_step_failure(step_, payload)

        celery_app.task(name=failure_task_name(step.base_task_name), bind=True)(
            on_failure_handler
        )

    def send_message_to_other_service(
        self, step: AsyncStep, payload: Any, task_name: str | None = None
    ) -> Any:
        """Send ``step``'s Celery task (or ``task_name``: a compensation sends
        its own) with ``args=[saga_id, payload]`` to the step's queue; returns
        the task id."""
        task_result = self.celery_app.send_task(
            task_name or step.base_task_name,
            args=[self.saga_id, payload],
            queue=step.queue,
        )
        return task_result.id


__all__ = ["AsyncSaga", "AsyncStep"]
