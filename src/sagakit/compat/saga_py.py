"""``saga-py`` (``from saga import SagaBuilder``) on sagakit's engine.

::

    from sagakit.compat.saga_py import SagaBuilder, SagaError

    saga = (
        SagaBuilder.create()
        .action(lambda: book_flight(), lambda: cancel_flight())
        .action(lambda **kw: book_hotel(**kw), lambda **kw: cancel_hotel(**kw))
        .build()
    )
    try:
        saga.execute()
    except SagaError as exc:
        exc.action          # what the failed action raised
        exc.compensations   # what failing compensations raised, in run order

The semantics are saga-py's: actions run in order; a dict an action returns
is passed as keyword arguments to the next action, and a compensation is
called with the keyword arguments its action received (with none when it
received none). When an action raises, the compensations of that action and
of every earlier one run in reverse order, every one of them even if some
fail, and :class:`SagaError` is raised with the action's exception and the
compensation exceptions. Each action is a sagakit :class:`~sagakit.Step` run
by an :class:`~sagakit.Orchestrator` on an in-memory store, in the calling
thread.

Differences from saga-py 1.1.0, on purpose:

- :class:`SagaError` derives from :class:`sagakit.SagaError` and so from
  :class:`Exception`; saga-py's derives from ``BaseException`` and slips past
  ``except Exception``. Its message names the saga id and the failed action;
  ``exc.action`` and ``exc.compensations`` are as in saga-py.
- An action returning something other than a dict or ``None`` is a failed
  action: the compensations run and :class:`SagaError` carries a
  ``TypeError``. saga-py raises the bare ``TypeError`` and compensates
  nothing, leaving every completed action in place.
- ``execute()`` called while an event loop runs (inside async code) runs the
  saga in a helper thread; ``await saga.execute_async()`` avoids that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sagakit.adapters.store.memory import InMemoryStore
from sagakit.compat.sync import call_sync
from sagakit.definition.retry import NO_RETRY
from sagakit.definition.saga import DictContext, Step
from sagakit.definition.saga import Saga as Definition
from sagakit.errors import SagaError as _SagakitError
from sagakit.runtime.orchestrator import Orchestrator


class SagaError(_SagakitError):
    """An action failed; its compensations (and earlier ones) have run.

    ``action`` is the exception the action raised; ``compensations`` the
    exceptions raised by compensations, in the order they ran (empty when all
    of them succeeded).
    """

    def __init__(
        self,
        exception: BaseException,
        compensation_exceptions: Sequence[BaseException],
        *,
        saga_id: str | None = None,
        step: str | None = None,
    ) -> None:
        failed = f"{step} failed" if step else "an action failed"
        comps = len(compensation_exceptions)
        where = f"saga {saga_id}: " if saga_id else ""
        super().__init__(
            f"{where}{failed}: {type(exception).__name__}: {exception}"
            + (f"; {comps} compensation(s) failed too" if comps else "")
        )
        self.action = exception
        self.compensations = list(compensation_exceptions)
        self.saga_id = saga_id
        self.step = step


@dataclass(frozen=True, slots=True)
class Action:
    """An action and the compensation that reverses it."""

    action: Callable[..., Any]
    compensation: Callable[..., Any]


class _ActionFailed(Exception):
    """Tells the engine the action failed; the real error is kept aside."""


@dataclass
class _Run:
    """The per-execution side of a saga-py run: kwargs and exceptions.

    They stay in this process (they need not be JSON); the engine sees only
    that a step succeeded or failed.
    """

    actions: Sequence[Action]
    current: dict[str, Any] = field(default_factory=dict)
    inputs: dict[int, dict[str, Any]] = field(default_factory=dict)
    action_error: BaseException | None = None
    compensation_errors: list[BaseException] = field(default_factory=list)

    def act(self, index: int) -> Callable[[DictContext], Any]:
        async def action(_: DictContext) -> None:
            kwargs = self.current
            self.inputs[index] = kwargs
            try:
                returned = self.actions[index].action(**kwargs) or {}
            except BaseException as exc:
                self.action_error = exc
                raise _ActionFailed(f"action {index} raised {exc!r}") from None
            if type(returned) is not dict:
                self.action_error = TypeError(
                    f"action return type should be dict or None but is {type(returned)}"
                )
                raise _ActionFailed(str(self.action_error))
            self.current = returned

        return action

    def compensate(self, index: int) -> Callable[[DictContext], Any]:
        async def compensation(_: DictContext) -> None:
            kwargs = self.inputs.get(index)
            undo = self.actions[index].compensation
            try:
                if kwargs:
                    undo(**kwargs)
                else:
                    undo()
            except BaseException as exc:
                self.compensation_errors.append(exc)

        return compensation


class Saga:
    """A series of actions, run by sagakit; build it with :class:`SagaBuilder`."""

    def __init__(self, actions: Sequence[Action], *, name: str = "saga_py") -> None:
        self.actions = list(actions)
        self.name = name

    def _definition(self, run: _Run) -> Definition[DictContext]:
        steps = [
            Step(
                f"action_{i}",
                run.act(i),
                compensate=run.compensate(i),
                compensate_on_failure=True,  # saga-py undoes the failed action too
                compensation_retry=NO_RETRY,
            )
            for i in range(len(self.actions))
        ]
        return Definition(self.name, steps)

    async def execute_async(self) -> None:
        """Run the saga; raise :class:`SagaError` if an action failed."""
        if not self.actions:
            return
        run = _Run(self.actions)
        definition = self._definition(run)
        orchestrator = Orchestrator(InMemoryStore(), [definition])
        try:
            result = await orchestrator.run(definition)
        finally:
            await orchestrator.close()
        if result.succeeded:
            return
        error = run.action_error
        if error is None:  # the engine failed the step: not the user's action
            error = result.exception or RuntimeError(str(result.error))
        raise SagaError(
            error,
            run.compensation_errors,
            saga_id=result.saga_id,
            step=result.failed_step,
        )

    def execute(self) -> None:
        """Run the saga; raise :class:`SagaError` if an action failed."""
        call_sync(self.execute_async())


class SagaBuilder:
    """Collects actions and their compensations, then builds a :class:`Saga`."""

    def __init__(self) -> None:
        self.actions: list[Action] = []

    @staticmethod
    def create() -> SagaBuilder:
        return SagaBuilder()

    def action(
        self, action: Callable[..., Any], compensation: Callable[..., Any]
    ) -> SagaBuilder:
        """Add an action and the compensation that reverses it."""
        self.actions.append(Action(action, compensation))
        return self

    def build(self) -> Saga:
        return Saga(self.actions)


__all__ = ["Action", "Saga", "SagaBuilder", "SagaError"]
