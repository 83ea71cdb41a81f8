"""``saga-py`` (``from saga import Saga, Action, SagaBuilder, SagaError``) on
sagakit's engine.

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

The interface is saga-py's: :class:`Saga` takes a list of action objects and
calls ``act(**kwargs)`` and ``compensate()`` on them, so an :class:`Action`,
any object shaped like one, and test doubles such as ``Mock(spec=Action)``
all work. :class:`Action` pairs an action with its compensation and calls the
compensation with the keyword arguments the action received (with none when
it received none). Actions run in order; a dict an action returns is passed
as keyword arguments to the next action. When an action raises, the
compensations of that action and of every earlier one run in reverse order,
every one of them even if some fail, and :class:`SagaError` is raised with
the action's exception and the compensation exceptions. Each action is a
sagakit :class:`~sagakit.Step` run by an :class:`~sagakit.Orchestrator` on an
in-memory store (saga-py keeps nothing either), in the calling thread.

Differences from saga-py 1.1.0, on purpose:

- :class:`SagaError` derives from :class:`sagakit.SagaError` and so from
  :class:`Exception`; saga-py's derives from ``BaseException`` and slips past
  ``except Exception``. Its message names the saga id and the failed action;
  ``exc.action`` and ``exc.compensations`` are as in saga-py.
- An action returning something other than a dict or ``None`` is a failed
  action: the compensations run (its own included) and
  :class:`ActionReturnError`, a :class:`SagaError` that is also a
  ``TypeError``, is raised with the ``TypeError`` as ``exc.action``. saga-py
  raises the bare ``TypeError`` and compensates nothing, leaving every
  completed action in place.
- ``execute()`` called while an event loop runs (inside async code) runs the
  saga in a helper thread; ``await saga.execute_async()`` avoids that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class ActionReturnError(SagaError, TypeError):
    """An action returned something other than a dict or ``None``.

    Raised after the compensations ran; ``action`` is the ``TypeError`` saga-py
    would have raised, and code that catches ``TypeError`` still catches it.
    """


class ActionLike(Protocol):
    """What :class:`Saga` calls: an :class:`Action` or anything shaped like one."""

    def act(self, **kwargs: Any) -> Any: ...

    def compensate(self) -> Any: ...


class Action:
    """An action and the compensation that reverses it.

    ``act(**kwargs)`` calls the action with the keyword arguments the previous
    action returned and returns what it returns; ``compensate()`` calls the
    compensation with the keyword arguments the last ``act`` received, or
    with none when it received none.
    """

    def __init__(
        self, action: Callable[..., Any], compensation: Callable[..., Any]
    ) -> None:
        self._action = action
        self._compensation = compensation
        self._kwargs: dict[str, Any] | None = None

    def act(self, **kwargs: Any) -> Any:
        """Run the action; a dict it returns goes to the next action."""
        self._kwargs = kwargs
        return self._action(**kwargs)

    def compensate(self) -> None:
        """Run the compensation with the arguments the action received."""
        if self._kwargs:
            self._compensation(**self._kwargs)
        else:
            self._compensation()


class _ActionFailed(Exception):
    """Tells the engine the action failed; the real error is kept aside."""


@dataclass
class _Run:
    """The per-execution side of a saga-py run: kwargs and exceptions.

    They stay in this process (they need not be JSON); the engine sees only
    that a step succeeded or failed.
    """

    actions: Sequence[ActionLike]
    kwargs: dict[str, Any] = field(default_factory=dict)
    action_error: BaseException | None = None
    bad_return: bool = False
    compensation_errors: list[BaseException] = field(default_factory=list)

    def act(self, index: int) -> Callable[[DictContext], Any]:
        async def action(_: DictContext) -> None:
            try:
                returned = self.actions[index].act(**self.kwargs) or {}
            except BaseException as exc:  # saga-py compensates even an exit
                self.action_error = exc
                raise _ActionFailed(f"action {index} raised {exc!r}") from None
            if type(returned) is not dict:
                self.bad_return = True
                self.action_error = TypeError(
                    f"action return type should be dict or None but is {type(returned)}"
                )
                raise _ActionFailed(str(self.action_error))
            self.kwargs = returned

        return action

    def compensate(self, index: int) -> Callable[[DictContext], Any]:
        async def compensation(_: DictContext) -> None:
            try:
                self.actions[index].compensate()
            except BaseException as exc:  # every compensation runs, as in saga-py
                self.compensation_errors.append(exc)

        return compensation


class Saga:
    """Runs a list of actions (:class:`Action` or alike) through sagakit.

    ``actions`` is kept as given, as saga-py keeps it; it is read when
    :meth:`execute` runs.
    """

    def __init__(self, actions: Sequence[ActionLike], *, name: str = "saga_py") -> None:
        self.actions = actions
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
            for i in range(len(run.actions))
        ]
        return Definition(self.name, steps)

    async def execute_async(self) -> None:
        """Run the saga; raise :class:`SagaError` if an action failed."""
        run = _Run(list(self.actions))
        if not run.actions:
            return
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
        kind = ActionReturnError if run.bad_return else SagaError
        raise kind(
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
        self.actions: list[ActionLike] = []

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


__all__ = ["Action", "ActionReturnError", "Saga", "SagaBuilder", "SagaError"]
