"""``BaseSaga`` and its steps: saga-framework's classes on sagakit's engine.

A saga object lists ``self.steps``; ``execute()`` turns them into a sagakit
:class:`~sagakit.Saga` (one :class:`~sagakit.Step` each) and runs it. The
callbacks run after the engine committed the change they report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from sagakit.compat.saga_framework.runtime import (
    CeleryWire,
    run_once,
)
from sagakit.compat.saga_framework.utils import NO_ACTION, failure_payload
from sagakit.compat.sync import call_sync
from sagakit.definition.retry import NO_RETRY, RetryPolicy
from sagakit.definition.saga import DictContext, Saga, Step
from sagakit.engine.events import Event, StepAttemptFailed, StepSucceeded
from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus, StepStatus
from sagakit.errors import DefinitionError, SagaError

logger = logging.getLogger(__name__)


class RemoteStepError(SagaError):
    """Stands for an exception raised in another process (or before a restart)."""


class BaseStep:
    """A named action and the compensation that undoes it; both get the step."""

    def __init__(
        self,
        name: str,
        action: Callable[..., Any] = NO_ACTION,
        compensation: Callable[..., Any] = NO_ACTION,
    ) -> None:
        self.name = name
        self.action = action
        self.compensation = compensation

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class SyncStep(BaseStep):
    """A step whose action runs in the orchestrator's process."""


class BaseSaga:
    """Runs ``steps`` in order; on a failure compensates the earlier ones in
    reverse order, then calls ``on_saga_failure``.

    ``store_url`` is where sagakit keeps the saga's state (``memory://`` for a
    saga that runs to its end inside ``execute()``). ``compensation_retry``
    defaults to no retry, as in saga-framework.
    """

    store_url: ClassVar[str | None] = "memory://"
    saga_name: ClassVar[str | None] = None
    compensation_retry: ClassVar[RetryPolicy] = NO_RETRY

    saga_id: Any = None
    steps: list[BaseStep]

    def __init__(self, saga_id: Any) -> None:
        self.saga_id = saga_id
        self._incoming: dict[str, Any] = {}
        self._failure_payload: dict[str, Any] | None = None
        self._callback_errors: list[Exception] = []

    # -- lookups (as saga-framework) ----------------------------------------

    def get_first_step(self) -> BaseStep:
        return self.steps[0]

    def get_step_by_name(self, step_name: str) -> BaseStep:
        for step in self.steps:
            if step.name == step_name:
                return step
        raise KeyError(f"no step found with name {step_name}")

    def step_is_last(self, step: BaseStep) -> bool:
        return step is self.steps[-1]

    # -- what a step does (override to add effects, as StatefulSaga does) ----

    def run_step(self, step: BaseStep) -> None:
        logger.info(
            "step running",
            extra={
                "action": "step_started",
                "saga_id": self.saga_id,
                "step": step.name,
            },
        )
        step.action(step)

    def compensate_step(
        self, step: BaseStep, initial_failure_payload: dict[str, Any]
    ) -> None:
        logger.info(
            "step compensating",
            extra={
                "action": "compensation_started",
                "saga_id": self.saga_id,
                "step": step.name,
            },
        )
        step.compensation(step)

    # -- callbacks ----------------------------------------------------------

    def on_step_success(self, step: BaseStep, payload: Any) -> None:
        """A step succeeded (``payload``: an async step's reply)."""

    def on_step_failure(self, failed_step: BaseStep, payload: dict[str, Any]) -> None:
        """A step failed; its compensations have not run yet."""

    def on_saga_success(self) -> None:
        """Every step succeeded."""

    def on_saga_failure(
        self, failed_step: BaseStep, initial_failure_payload: dict[str, Any]
    ) -> None:
        """A step failed and every compensation has run."""

    def on_compensation_failure(
        self,
        initially_failed_step: BaseStep,
        initial_failure_payload: dict[str, Any],
        compensation_failed_step: BaseStep,
        compensation_exception: BaseException,
    ) -> None:
        """A compensation failed; the rollback stopped there."""

    # -- running ------------------------------------------------------------

    def execute(self, starting_step: BaseStep | None = None) -> None:
        """Start the saga; with only sync steps it also ends here."""
        call_sync(self.execute_async(starting_step))

    async def execute_async(self, starting_step: BaseStep | None = None) -> None:
        if starting_step is not None and starting_step is not self.steps[0]:
            raise SagaError(
                f"saga {self.saga_id}: execute() starts a saga at its first step; "
                "sagakit decides which step runs next"
            )
        definition = self.definition()
        saga_id = str(self.saga_id)

        async def start(orchestrator: Any) -> None:
            await orchestrator.start(definition, None, saga_id=saga_id)

        await run_once(self.store_url, definition, self, self._wire(), start)
        self._raise_callback_errors()

    def _wire(self) -> CeleryWire | None:
        return None

    def definition(self) -> Saga[DictContext]:
        """The sagakit definition of this saga's steps."""
        name = self.saga_name or type(self).__name__
        return Saga(name, [self._step(step) for step in self.steps])

    def _step(self, step: BaseStep) -> Step:
        if not isinstance(step, SyncStep):
            raise DefinitionError(
                f"{type(self).__name__}: step {step.name!r} is a "
                f"{type(step).__name__}; only AsyncSaga runs async steps"
            )

        async def action(_: DictContext) -> None:
            self.run_step(step)

        return Step(
            step.name,
            action,
            compensate=self._compensation(step),
            compensation_retry=self.compensation_retry,
        )

    def _compensation(self, step: BaseStep) -> Callable[[DictContext], Any]:
        async def compensation(_: DictContext) -> None:
            self.compensate_step(step, self._failure_payload or {})

        return compensation

    # -- engine transitions to callbacks ------------------------------------

    def _callback(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            logger.exception(
                "saga callback failed",
                extra={"action": "callback_failed", "saga_id": self.saga_id},
            )
            self._callback_errors.append(exc)

    def _raise_callback_errors(self) -> None:
        if self._callback_errors:
            first, self._callback_errors = self._callback_errors[0], []
            raise first

    def _transition(
        self,
        before: SagaState,
        after: SagaState,
        event: Event,
        exceptions: Mapping[str, BaseException],
        *,
        committed: bool,
    ) -> None:
        if not committed:
            self._succeeding(after, event)
            return
        if (
            isinstance(event, StepAttemptFailed)
            and before.failed_step is None
            and after.failed_step == event.step
        ):
            incoming = self._incoming.pop(event.step, None)
            self._failure_payload = (
                incoming
                if isinstance(incoming, dict)
                else failure_payload(exceptions.get(event.step), after.error)
            )
            step = self.get_step_by_name(event.step)
            self._callback(self.on_step_failure, step, self._failure_payload)
        if after.status.terminal and not before.status.terminal:
            self._finished(after, exceptions)

    def _succeeding(self, after: SagaState, event: Event) -> None:
        """Before the success is committed and the next step starts (as the
        original runs ``on_success`` before the next step)."""
        if (
            isinstance(event, StepSucceeded)
            and after.step(event.step).status is StepStatus.SUCCEEDED
        ):
            payload = self._incoming.pop(event.step, after.step(event.step).result)
            self._callback(
                self.on_step_success, self.get_step_by_name(event.step), payload
            )

    def _finished(
        self, state: SagaState, exceptions: Mapping[str, BaseException]
    ) -> None:
        if state.status is SagaStatus.SUCCEEDED:
            self._callback(self.on_saga_success)
            return
        failed = self.get_step_by_name(state.failed_step or "")
        payload = self._failure_payload or failure_payload(None, state.error)
        if state.status is SagaStatus.COMPENSATION_FAILED:
            name = state.compensation_step or ""
            self._callback(
                self.on_compensation_failure,
                initially_failed_step=failed,
                initial_failure_payload=payload,
                compensation_failed_step=self.get_step_by_name(name),
                compensation_exception=exceptions.get(name)
                or RemoteStepError(str(state.compensation_error or ErrorInfo("?", ""))),
            )
            return
        self._callback(self.on_saga_failure, failed, payload)


__all__ = ["BaseSaga", "BaseStep", "RemoteStepError", "SyncStep"]
