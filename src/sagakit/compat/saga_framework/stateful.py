"""``StatefulSaga``: an ``AsyncSaga`` that mirrors its progress into your table.

sagakit keeps the saga's own state in its store; the repository keeps the
business-facing row (``status``, ``failed_step``, ``failure_details`` ...)
that saga-framework users query. Statuses written, in order:
``<step>.running``, ``<step>.succeeded`` | ``<step>.failed``,
``<step>.compensating``, ``<step>.compensated``, then ``succeeded``,
``failed`` or ``compensation_failed``.
"""

from __future__ import annotations

import abc
from typing import Any

from sagakit.compat.saga_framework.async_saga import AsyncSaga
from sagakit.compat.saga_framework.base import BaseStep


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
        self,
        saga_id: Any,
        failed_step: BaseStep,
        initial_failure_payload: dict[str, Any],
    ) -> object:
        raise NotImplementedError


class StatefulSaga(AsyncSaga, abc.ABC):
    """An :class:`AsyncSaga` that writes its status through a repository."""

    saga_state_repository: AbstractSagaStateRepository
    _saga_state: object = None

    def __init__(
        self,
        saga_state_repository: AbstractSagaStateRepository,
        celery_app: Any,
        saga_id: Any,
    ) -> None:
        self.saga_state_repository = saga_state_repository
        super().__init__(celery_app, saga_id)

    @property
    def saga_state(self) -> object:
        if not self._saga_state:
            self._saga_state = self.saga_state_repository.get_saga_state_by_id(
                self.saga_id
            )
        return self._saga_state

    def _status(self, status: str) -> None:
        self.saga_state_repository.update_status(self.saga_id, status=status)

    def run_step(self, step: BaseStep) -> None:
        self._status(f"{step.name}.running")
        super().run_step(step)

    def compensate_step(
        self, step: BaseStep, initial_failure_payload: dict[str, Any]
    ) -> None:
        self._status(f"{step.name}.compensating")
        super().compensate_step(step, initial_failure_payload)
        self._status(f"{step.name}.compensated")

    def on_step_success(self, step: BaseStep, payload: Any) -> None:
        self._status(f"{step.name}.succeeded")
        super().on_step_success(step, payload)

    def on_step_failure(self, failed_step: BaseStep, payload: dict[str, Any]) -> None:
        self._status(f"{failed_step.name}.failed")
        self.saga_state_repository.on_step_failure(self.saga_id, failed_step, payload)
        super().on_step_failure(failed_step, payload)

    def on_saga_success(self) -> None:
        super().on_saga_success()
        self._status("succeeded")

    def on_saga_failure(
        self, failed_step: BaseStep, initial_failure_payload: dict[str, Any]
    ) -> None:
        super().on_saga_failure(failed_step, initial_failure_payload)
        self._status("failed")

    def on_compensation_failure(
        self,
        initially_failed_step: BaseStep,
        initial_failure_payload: dict[str, Any],
        compensation_failed_step: BaseStep,
        compensation_exception: BaseException,
    ) -> None:
        super().on_compensation_failure(
            initially_failed_step,
            initial_failure_payload,
            compensation_failed_step,
            compensation_exception,
        )
        self._status("compensation_failed")

    @classmethod
    def register_async_step_handlers(  # type: ignore[override]
        cls, saga_state_repository: AbstractSagaStateRepository, celery_app: Any
    ) -> None:
        """Register the response tasks; each builds the saga with the repository."""
        cls._register(
            celery_app, lambda saga_id: cls(saga_state_repository, celery_app, saga_id)
        )


__all__ = ["AbstractSagaStateRepository", "StatefulSaga"]
