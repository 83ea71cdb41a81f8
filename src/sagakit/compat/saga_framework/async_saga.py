"""``AsyncSaga`` and ``AsyncStep``: steps carried out by other services via Celery.

An :class:`AsyncStep` becomes a sagakit step with a
:class:`~sagakit.definition.remote.Remote` action. Its ``action`` still runs
(it builds the command: whatever it passes to
``send_message_to_other_service`` is the payload) and sagakit sends the
Celery task ``base_task_name`` with ``args=[saga_id, payload]`` to ``queue``
through the store's outbox. The step succeeds or fails when the orchestrator's
Celery worker runs ``{base_task_name}.response.success`` or ``.failure``
(registered by :meth:`AsyncSaga.register_async_step_handlers`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar, Self

from sagakit.compat.saga_framework.base import BaseSaga, BaseStep
from sagakit.compat.saga_framework.runtime import (
    COMMAND_PREFIX,
    CeleryApp,
    CeleryWire,
    run_once,
)
from sagakit.compat.saga_framework.utils import (
    NO_ACTION,
    failure_task_name,
    success_task_name,
)
from sagakit.compat.sync import call_sync
from sagakit.definition.remote import Remote
from sagakit.definition.saga import DictContext, Step
from sagakit.errors import SagaError
from sagakit.messaging.envelope import Envelope, new_message_id
from sagakit.runtime.remote import command_id

logger = logging.getLogger(__name__)

NO_REPLY_TIMEOUT = 30 * 24 * 3600.0
"""saga-framework waits for a reply forever; sagakit records a deadline."""


class AsyncStep(BaseStep):
    """A step handled by another service: a Celery task and its response."""

    def __init__(
        self,
        base_task_name: str,
        queue: str,
        on_success: Callable[..., Any] = NO_ACTION,
        on_failure: Callable[..., Any] = NO_ACTION,
        *args: Any,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.base_task_name = base_task_name
        self.queue = queue
        self.on_success = on_success
        self.on_failure = on_failure
        self.timeout = timeout
        super().__init__(*args, **kwargs)


class AsyncSaga(BaseSaga):
    """A saga whose async steps send Celery tasks; ``celery_app`` sends them.

    Its state lives in the sagakit store at ``store_url`` (by default
    ``$SAGAKIT_DATABASE_URL``), shared by the process that calls ``execute()``
    and the Celery worker that handles the responses.
    """

    store_url: ClassVar[str | None] = None
    celery_app: Any = None

    def __init__(self, celery_app: Any, *args: Any, **kwargs: Any) -> None:
        self.celery_app = celery_app
        self._outgoing: dict[str, Any] | None = None
        super().__init__(*args, **kwargs)

    @property
    def async_steps(self) -> list[AsyncStep]:
        return [step for step in self.steps if isinstance(step, AsyncStep)]

    def get_async_step_by_success_task_name(self, name: str) -> AsyncStep:
        for step in self.async_steps:
            if success_task_name(step.base_task_name) == name:
                return step
        raise KeyError(f"no step found with success task name {name}")

    def get_async_step_by_failure_task_name(self, name: str) -> AsyncStep:
        for step in self.async_steps:
            if failure_task_name(step.base_task_name) == name:
                return step
        raise KeyError(f"no step found with failure task name {name}")

    # -- sending ------------------------------------------------------------

    def send_message_to_other_service(
        self, step: AsyncStep, payload: dict[str, Any], task_name: str | None = None
    ) -> str:
        """Set the payload of ``step``'s Celery task; returns the task id.

        The task is sent once the step's start is committed (from the outbox).
        """
        if task_name is not None and task_name != step.base_task_name:
            raise SagaError(
                f"saga {self.saga_id}: step {step.name!r} sends "
                f"{step.base_task_name!r}, not {task_name!r}"
            )
        self._outgoing = payload
        return command_id(str(self.saga_id), step.name, 1, False)

    def _step(self, step: BaseStep) -> Step:
        if not isinstance(step, AsyncStep):
            return super()._step(step)

        def build(_: DictContext) -> dict[str, Any]:
            self._outgoing = None
            self.run_step(step)
            return self._outgoing or {}

        return Step(
            step.name,
            Remote(
                COMMAND_PREFIX + step.base_task_name, payload=build, queue=step.queue
            ),
            compensate=self._compensation(step),
            compensation_retry=self.compensation_retry,
            timeout=step.timeout or NO_REPLY_TIMEOUT,
        )

    def _wire(self) -> CeleryWire | None:
        if self.celery_app is None and not self.async_steps:
            return None  # nothing to send
        if self.celery_app is None:
            raise SagaError(f"saga {self.saga_id}: AsyncSaga needs a celery_app")
        wire: CeleryApp = self.celery_app
        return CeleryWire(wire)

    # -- responses ----------------------------------------------------------

    def on_step_success(self, step: BaseStep, payload: Any) -> None:
        if isinstance(step, AsyncStep):
            self.on_async_step_success(step, payload)

    def on_step_failure(self, failed_step: BaseStep, payload: dict[str, Any]) -> None:
        if isinstance(failed_step, AsyncStep):
            self.on_async_step_failure(failed_step, payload)

    def on_async_step_success(self, step: AsyncStep, payload: Any) -> None:
        """The step's success response was applied; the engine runs what follows."""
        step.on_success(step, payload)

    def on_async_step_failure(self, step: AsyncStep, payload: Any) -> None:
        """The step's failure response was applied; compensations follow."""
        step.on_failure(step, payload)

    def handle_response(
        self, step: AsyncStep, payload: Any, *, ok: bool, message_id: str | None = None
    ) -> None:
        """Apply a step handler's response (what the registered tasks call)."""
        call_sync(
            self.handle_response_async(step, payload, ok=ok, message_id=message_id)
        )

    async def handle_response_async(
        self, step: AsyncStep, payload: Any, *, ok: bool, message_id: str | None = None
    ) -> None:
        saga_id = str(self.saga_id)
        error = None
        if not ok:
            raw = payload if isinstance(payload, dict) else {"message": str(payload)}
            error = {
                "type": str(raw.get("type") or "RemoteError"),
                "message": str(raw.get("message") or ""),
            }
        reply = Envelope(
            id=message_id or new_message_id(),
            kind="reply",
            type=COMMAND_PREFIX + step.base_task_name,
            correlation_id=f"{saga_id}:{step.name}:1",
            saga_id=saga_id,
            step=step.name,
            attempt=1,
            ok=ok,
            payload=payload if ok and isinstance(payload, dict) else {},
            error=error,
        )
        self._incoming[step.name] = payload
        await run_once(
            self.store_url,
            self.definition(),
            self,
            self._wire(),
            lambda orchestrator: orchestrator.handle_reply(reply),
        )
        self._raise_callback_errors()

    @classmethod
    def register_async_step_handlers(cls, celery_app: Any) -> None:
        """Register the ``.response.success|failure`` tasks of every async step."""
        cls._register(celery_app, lambda saga_id: cls(celery_app, saga_id))

    @classmethod
    def _register(cls, celery_app: Any, factory: Callable[[Any], Self]) -> None:
        template = factory(None)
        for step in template.async_steps:
            for ok in (True, False):
                name = (success_task_name if ok else failure_task_name)(
                    step.base_task_name
                )
                celery_app.task(name=name, bind=True)(_response_task(factory, ok))


def _response_task(
    factory: Callable[[Any], AsyncSaga], ok: bool
) -> Callable[[Any, Any, Any], None]:
    def on_response(celery_task: Any, saga_id: Any, payload: Any) -> None:
        saga = factory(saga_id)
        name: str = celery_task.name
        step = (
            saga.get_async_step_by_success_task_name(name)
            if ok
            else saga.get_async_step_by_failure_task_name(name)
        )
        saga.handle_response(step, payload, ok=ok, message_id=celery_task.request.id)

    return on_response


__all__ = ["AsyncSaga", "AsyncStep"]
