"""``StatefulSaga``, as ``saga_framework.stateful_saga``: an ``AsyncSaga``
that mirrors its progress into your table through a repository.

sagakit keeps the saga's own state in its store; the repository keeps the
business-facing row users query. The statuses written are saga-framework's:
``<step>.running`` as each step starts, then ``<step>.compensating`` and
``<step>.compensated`` for each step rolled back, and ``succeeded`` or
``failed`` at the end (a rollback that stops on a failing compensation
leaves ``<step>.compensating``). ``on_step_success`` and ``on_step_failure``
(which would write ``<step>.succeeded`` / ``.failed``) are there for your
code to call, as in saga-framework, whose response handlers never do.
"""

from __future__ import annotations

import abc
from typing import Any

from sagakit.compat.saga_framework.async_saga import AsyncSaga, AsyncStep
from sagakit.compat.saga_framework.base_saga import BaseStep
from sagakit.compat.saga_framework.utils import failure_task_name, success_task_name


class AbstractSagaStateRepository(abc.ABC):
    """Where a :class:`StatefulSaga` records its progress (any ORM)."""

    @abc.abstractmethod
    def get_saga_state_by_id(self, saga_id: Any) -> object:
        raise NotImplementedError

    @abc.abstractmethod
    def update_status(self, saga_id: Any, status: str) -> object:
        raise NotImplementedError

    @abc.abstractmethod
    def update(self, saga_id: Any, **fields_to_update: Any) -> object:
        raise NotImplementedError

    @abc.abstractmethod
    def on_step_failure(
        self, saga_id: Any, failed_step: BaseStep, initial_failure_payload: Any
    ) -> object:
        raise NotImplementedError


class StatefulSaga(AsyncSaga, abc.ABC):
    """An :class:`AsyncSaga` that writes its status through a repository."""

    saga_state_repository: AbstractSagaStateRepository = None  # type: ignore[assignment]
    _saga_state: Any = None

    def __init__(
        self,
        saga_state_repository: AbstractSagaStateRepository,
        celery_app: Any,
        saga_id: Any,
    ) -> None:
        self.saga_state_repository = saga_state_repository
        super().__init__(celery_app, saga_id)

    @property
    def saga_state(self) -> Any:
        if not self._saga_state:
            self._saga_state = self.saga_state_repository.get_saga_state_by_id(
                self.saga_id
            )
        return self._saga_state

    def run_step(self, step: BaseStep) -> None:
        self.saga_state_repository.update_status(
            self.saga_id, status=f"{step.name}.running"
        )
        super().run_step(step)

    def compensate_step(self, step: BaseStep, initial_failure_payload: Any) -> None:
        self.saga_state_repository.update_status(
            self.saga_id, status=f"{step.name}.compensating"
        )
        super().compensate_step(step, initial_failure_payload)
        self.saga_state_repository.update_status(
            self.saga_id, status=f"{step.name}.compensated"
        )

    def on_step_success(self, step: AsyncStep, *args: Any, **kwargs: Any) -> None:
        self.saga_state_repository.update_status(
            self.saga_id, status=f"{step.name}.succeeded"
        )
        super().on_async_step_success(step, *args, **kwargs)

    def on_step_failure(self, failed_step: AsyncStep, payload: Any) -> None:
        self.saga_state_repository.update_status(
            self.saga_id, status=f"{failed_step.name}.failed"
        )
        super().on_async_step_failure(failed_step, payload)

    def on_saga_success(self) -> None:
        super().on_saga_success()
        self.saga_state_repository.update_status(self.saga_id, "succeeded")

    def on_saga_failure(self, *args: Any, **kwargs: Any) -> None:
        super().on_saga_failure(*args, **kwargs)
        self.saga_state_repository.update_status(self.saga_id, "failed")

    def compensate(
        self, failed_step: BaseStep, initial_failure_payload: Any = None
    ) -> None:
        self.saga_state_repository.on_step_failure(
            self.saga_id, failed_step, initial_failure_payload
        )
        super().compensate(failed_step, initial_failure_payload)

    @classmethod
    def register_async_step_handlers(  # type: ignore[override]
        cls, saga_state_repository: AbstractSagaStateRepository, celery_app: Any
    ) -> None:
        """Register the response tasks; each builds the saga with the repository."""
        template = cls(None, None, None)  # type: ignore[arg-type]
        for step in template.async_steps:
            cls.register_success_handler_for_step(
                saga_state_repository, celery_app, step
            )
            cls.register_failure_handler_for_step(
                saga_state_repository, celery_app, step
            )

    @classmethod
    def register_success_handler_for_step(  # type: ignore[override]
        cls,
        saga_state_repository: AbstractSagaStateRepository,
        celery_app: Any,
        step: AsyncStep,
    ) -> None:
        def on_success_handler(celery_task: Any, saga_id: Any, payload: Any) -> None:
            saga = cls(
                saga_state_repository=saga_state_repository,
                celery_app=celery_app,
                saga_id=saga_id,
            )
            step_ = saga.get_async_step_by_success_task_name(celery_task.name)
            saga.on_async_step_success(step_, payload)

        celery_app.task(name=success_task_name(step.base_task_name), bind=True)(
            on_success_handler
        )

    @classmethod
    def register_failure_handler_for_step(  # type: ignore[override]
        cls,
        saga_state_repository: AbstractSagaStateRepository,
        celery_app: Any,
        step: AsyncStep,
    ) -> None:
        def on_failure_handler(celery_task: Any, saga_id: Any, payload: Any) -> None:
            saga = cls(saga_state_repository, celery_app, saga_id)
            step_ = saga.get_async_step_by_failure_task_name(celery_task.name)
            saga.on_async_step_failure(step_, payload)

        celery_app.task(name=failure_task_name(step.base_task_name), bind=True)(
            on_failure_handler
        )


__all__ = ["AbstractSagaStateRepository", "StatefulSaga"]
