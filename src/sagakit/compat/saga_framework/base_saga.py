"""``BaseSaga`` and its steps, as ``saga_framework.base_saga``, on sagakit.

A saga object lists ``self.steps``; ``execute()`` runs them in order through
sagakit's engine (:mod:`~sagakit.compat.saga_framework.flow`), calling the
same methods saga-framework calls, when it calls them: ``run_step`` for each
step, ``compensate`` when one fails, ``compensate_step`` for each earlier
step (last first), then ``on_saga_success``, ``on_saga_failure`` or
``on_compensation_failure``. A step that is not a :class:`SyncStep` (an
``AsyncStep``) runs its action, then the saga waits for its reply.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from sagakit.compat.saga_framework.flow import Flow, Position, RemoteStepError
from sagakit.compat.saga_framework.runtime import call_sync
from sagakit.compat.saga_framework.utils import (
    NO_ACTION,
    format_exception_as_python_does,
)
from sagakit.definition.retry import NO_RETRY, RetryPolicy

logger = logging.getLogger("sagakit.compat.saga_framework")


class BaseStep(abc.ABC):  # noqa: B024 - abstract in saga-framework, yet instantiable
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
    """Runs ``steps`` in order; when one fails, compensates the earlier ones
    (last first), then calls ``on_saga_failure``.

    sagakit additions, all optional: ``store_url`` (where the saga's progress
    is kept: see :mod:`~sagakit.compat.saga_framework.runtime`), ``saga_name``
    (the sagakit saga name; the class name by default),
    ``compensation_retry`` (none, as in saga-framework) and ``reply_wait``
    (seconds a reply for a step whose start is not committed yet waits for it).
    """

    saga_id: Any = None
    steps: list[BaseStep] = None  # type: ignore[assignment] # set by __init__

    store_url: ClassVar[str | None] = None
    saga_name: ClassVar[str | None] = None
    compensation_retry: ClassVar[RetryPolicy] = NO_RETRY
    reply_wait: ClassVar[float] = 5.0

    def __init__(self, saga_id: Any) -> None:
        self.saga_id = saga_id

    @property
    def _flow(self) -> Flow:
        flow: Flow | None = self.__dict__.get("_sagakit_flow")
        if flow is None:
            flow = self.__dict__["_sagakit_flow"] = Flow(self)
        return flow

    # -- lookups ------------------------------------------------------------

    def get_first_step(self) -> BaseStep:
        return self.steps[0]

    def get_step_by_name(self, step_name: str) -> BaseStep:
        for step in self.steps:
            if step.name == step_name:
                return step
        raise KeyError(f"no step found with name {step_name}")

    def _get_step_index(self, step: BaseStep) -> int:
        for index, each in enumerate(self.steps):
            if each.name == step.name:
                return index
        raise IndexError("step wasn't found")

    def _get_next_step(self, step: BaseStep | None) -> BaseStep | None:
        if not step:
            return self.steps[0]
        index = self._get_step_index(step)
        return None if index == len(self.steps) - 1 else self.steps[index + 1]

    def _get_previous_step(self, step: BaseStep) -> BaseStep | None:
        index = self._get_step_index(step)
        return None if index == 0 else self.steps[index - 1]

    def step_is_last(self, step: BaseStep) -> bool:
        return step == self.steps[-1]

    # -- what a step does (override to add effects, as StatefulSaga does) ----

    def run_step(self, step: BaseStep) -> None:
        logger.info(
            "Saga %s: running %r step",
            self.saga_id,
            step.name,
            extra={"action": "step_started", "saga_id": self.saga_id},
        )
        step.action(step)

    def compensate_step(self, step: BaseStep, initial_failure_payload: Any) -> None:
        logger.info(
            "Saga %s: compensating %r step",
            self.saga_id,
            step.name,
            extra={"action": "compensation_started", "saga_id": self.saga_id},
        )
        step.compensation(step)

    def compensate(
        self, failed_step: BaseStep, initial_failure_payload: Any = None
    ) -> None:
        """Roll back the steps before ``failed_step``, then ``on_saga_failure``.

        sagakit calls it when a step fails, just before its engine runs the
        rollback; called from your code, it fails ``failed_step`` in the
        saga's newest run (or a new one) and rolls back."""
        flow = self._flow
        if flow.marking:
            return  # the engine rolls back right after this call
        flow.receive(failed_step, False, initial_failure_payload, hooks=False)

    # -- running ------------------------------------------------------------

    def execute(self, starting_step: BaseStep | None = None) -> None:
        """Run the saga from ``starting_step`` (the first by default) until it
        ends or waits for a reply; each call is a new run of the saga id."""
        call_sync(self.execute_async(starting_step))

    async def execute_async(self, starting_step: BaseStep | None = None) -> None:
        """``execute`` from async code."""
        index = 0 if starting_step is None else self._get_step_index(starting_step)
        await self._flow.start(Position(index))

    # -- callbacks ----------------------------------------------------------

    def on_saga_success(self) -> None:
        """Every step succeeded."""
        logger.info(
            "Saga %s succeeded",
            self.saga_id,
            extra={"action": "saga_succeeded", "saga_id": self.saga_id},
        )

    def on_saga_failure(
        self, failed_step: BaseStep, initial_failure_payload: Any
    ) -> None:
        """A step failed and every compensation ran."""
        logger.info(
            "Saga %s failed on %r step. Failure details: %s",
            self.saga_id,
            failed_step.name,
            initial_failure_payload,
            extra={"action": "saga_failed", "saga_id": self.saga_id},
        )

    def on_compensation_failure(
        self,
        initially_failed_step: BaseStep,
        initial_failure_payload: Any,
        compensation_failed_step: BaseStep,
        compensation_exception: BaseException,
    ) -> None:
        """A compensation (or ``on_saga_failure``) raised; the rollback stopped.

        As in saga-framework, ``compensation_failed_step`` is the step that
        failed first; the traceback of ``compensation_exception`` shows where."""
        logger.info(
            "Saga %s failed while compensating %r step.\nError details: %s\n\n"
            "Initial failure details: %s",
            self.saga_id,
            compensation_failed_step.name,
            format_exception_as_python_does(compensation_exception),
            initial_failure_payload,
            extra={"action": "compensation_failed", "saga_id": self.saga_id},
        )


__all__ = ["NO_ACTION", "BaseSaga", "BaseStep", "RemoteStepError", "SyncStep"]
