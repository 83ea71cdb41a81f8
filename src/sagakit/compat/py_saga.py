"""``py-saga`` (``import pysaga``) on sagakit's engine.

::

    from sagakit.compat.py_saga import Saga, State

    saga = Saga()
    saga.add_step(book_flight, cancel_flight)   # plain or async functions
    saga.add_step(book_hotel, cancel_hotel)
    await saga.run(traveller="maria")           # every step gets the arguments
    saga.state                                  # State.SUCCESS or State.FAILURE

The semantics are py-saga's: all steps start at once, each called with the
arguments given to :meth:`Saga.run`; a step succeeds when it returns a truthy
value. Once every step has finished, if any failed, the compensations of the
steps that succeeded run, at once, with the same arguments, and the saga ends
:attr:`State.FAILURE` (:attr:`State.SUCCESS` otherwise). Plain functions run
in an executor thread, coroutine functions on the loop. ``Saga``, ``Step``,
``FuncStep``, ``State`` and ``StatefulEntity`` keep py-saga's names, methods
and properties (``state``, ``complete``, ``success``, ``failure``), and
``Step`` subclasses with ``async run``/``compensate`` methods work as they
do there. The steps are a :class:`~sagakit.Parallel` group of a sagakit saga
run by an :class:`~sagakit.Orchestrator` on an in-memory store (py-saga keeps
nothing either).

Differences from py-saga, on purpose:

- A step that raises counts as failed: the saga waits for the other steps,
  compensates those that succeeded, ends :attr:`State.FAILURE`, and then
  :meth:`Saga.run` re-raises the step's exception (the first step's, in the
  order the steps were added, when several raised). py-saga lets the
  exception escape at once, compensates nothing, and leaves the saga in
  :attr:`State.CREATED`.
- A compensation that raises does not stop the others: they all run, the
  step keeps :attr:`State.SUCCESS` (it was not compensated), the saga ends
  :attr:`State.FAILURE`, and the compensation's exception is raised once all
  of them have finished. py-saga raises it at once, leaving the other
  compensations unawaited.
- While :meth:`Saga.run` runs, the saga is in :attr:`State.RUNNING`
  (py-saga leaves it :attr:`State.CREATED` until the end).
- ``run(executor=...)`` is the executor that plain functions run in; py-saga
  accepts the argument and ignores it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from sagakit.adapters.store.memory import InMemoryStore
from sagakit.definition.retry import NO_RETRY
from sagakit.definition.saga import DictContext, Parallel
from sagakit.definition.saga import Saga as Definition
from sagakit.definition.saga import Step as Stage
from sagakit.runtime.orchestrator import Orchestrator

_EXECUTOR: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "py_saga_executor", default=None
)


class State(Enum):
    """Where a saga or a step is (py-saga's values)."""

    SUCCESS = 0
    COMPENSATED = 1
    FAILURE = 2
    CREATED = 3
    RUNNING = 4


class StatefulEntity:
    """Something with a :class:`State` and py-saga's properties over it."""

    _state: State = State.CREATED

    def __init__(self) -> None:
        self._state = State.CREATED

    @property
    def state(self) -> State:
        return self._state

    @property
    def complete(self) -> bool:
        return self._state in (State.COMPENSATED, State.SUCCESS, State.FAILURE)

    @property
    def success(self) -> bool:
        return self._state in (State.COMPENSATED, State.SUCCESS)

    @property
    def failure(self) -> bool:
        return self._state is State.FAILURE


class Step(StatefulEntity):
    """A step of a saga: subclasses define ``async run`` and ``async compensate``.

    ``run`` succeeds when it returns a truthy value; ``compensate`` undoes a
    successful run. Both get the arguments given to :meth:`Saga.run`.
    """

    _step_classes: ClassVar[set[type[Step]]] = set()

    @staticmethod
    def register_step_class(klass: type[Step]) -> None:
        """Let :meth:`from_args` (and so ``Saga.add_step``) build ``klass``."""
        Step._step_classes.add(klass)

    @staticmethod
    def from_args(*args: Any, **kwargs: Any) -> Step | None:
        """A step from ``add_step``'s arguments: a step itself, or what a
        registered step class makes of them; ``None`` if none fits."""
        if args and isinstance(args[0], Step):
            return args[0]
        for klass in Step._step_classes:
            step = klass.from_args(*args, **kwargs)
            if step is not None:
                return step
        return None

    async def do_run(self, *args: Any, **kwargs: Any) -> None:
        """Run the step and record whether it succeeded (raising fails it)."""
        self._state = State.RUNNING
        try:
            succeeded = await self.run(*args, **kwargs)
        except Exception:
            self._state = State.FAILURE
            raise
        self._state = State.SUCCESS if succeeded else State.FAILURE

    async def do_compensate(self, *args: Any, **kwargs: Any) -> None:
        """Undo the step; it is :attr:`State.COMPENSATED` once that returned."""
        await self.compensate(*args, **kwargs)
        self._state = State.COMPENSATED

    async def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define run()")

    async def compensate(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define compensate()")


class FuncStep(Step):
    """A step made of two functions, plain or ``async``."""

    def __init__(
        self, func: Callable[..., Any], compensation: Callable[..., Any]
    ) -> None:
        # ValueError, not TypeError, for bad arguments: py-saga's choice
        for role, value in (("func", func), ("compensation", compensation)):
            if not callable(value):
                raise ValueError(  # noqa: TRY004 - see above
                    f"FuncStep: {role} must be callable, got {value!r}"
                )
        self.func = func
        self.compensation = compensation
        super().__init__()

    async def _run_func(
        self,
        func: Callable[..., Any],
        *args: Any,
        executor: Executor | None = None,
        **kwargs: Any,
    ) -> Any:
        if inspect.iscoroutinefunction(func):
            return await func(*args, **kwargs)
        loop = asyncio.get_running_loop()
        call = functools.partial(func, *args, **kwargs)
        return await loop.run_in_executor(executor or _EXECUTOR.get(), call)

    async def run(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run_func(self.func, *args, **kwargs)

    async def compensate(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run_func(self.compensation, *args, **kwargs)

    @staticmethod
    def from_args(*args: Any, **kwargs: Any) -> FuncStep | None:
        if len(args) <= 1 or not callable(args[0]) or not callable(args[1]):
            return None
        return FuncStep(args[0], args[1])


Step.register_step_class(FuncStep)


class _StepFailed(Exception):
    """Tells the engine a step failed; what it raised, if anything, is kept aside."""


@dataclass
class _Run:
    """One :meth:`Saga.run`: its arguments and what the user's code raised.

    They stay in this process (they need not be JSON); the engine sees only
    that a step or a compensation succeeded or failed.
    """

    steps: Sequence[Step]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    raised: dict[int, Exception] = field(default_factory=dict)
    compensation_raised: dict[int, Exception] = field(default_factory=dict)

    def act(self, index: int) -> Callable[[DictContext], Any]:
        async def action(_: DictContext) -> None:
            step = self.steps[index]
            try:
                await step.do_run(*self.args, **self.kwargs)
            except Exception as exc:
                self.raised[index] = exc
                raise _StepFailed(f"step {index} raised {exc!r}") from None
            if not step.success:
                raise _StepFailed(f"step {index} returned a falsy value")

        return action

    def compensate(self, index: int) -> Callable[[DictContext], Any]:
        async def compensation(_: DictContext) -> None:
            try:
                await self.steps[index].do_compensate(*self.args, **self.kwargs)
            except Exception as exc:
                self.compensation_raised[index] = exc
                raise _StepFailed(f"compensating step {index} raised {exc!r}") from None

        return compensation

    def definition(self) -> Definition[DictContext]:
        """All steps in one parallel group; every compensation is attempted."""
        stages = [
            Stage(
                f"step_{i}",
                self.act(i),
                compensate=self.compensate(i),
                compensation_retry=NO_RETRY,
            )
            for i in range(len(self.steps))
        ]
        return Definition(
            "py_saga", [Parallel(*stages)], on_compensation_failure="continue"
        )

    @property
    def failed(self) -> bool:
        return bool(self.raised or self.compensation_raised) or any(
            step.failure for step in self.steps
        )

    def first_error(self) -> Exception | None:
        """What :meth:`Saga.run` raises: a step's exception before a
        compensation's, the earliest added step's first; the others are
        added to it as notes."""
        errors = [
            *(("step", i, exc) for i, exc in sorted(self.raised.items())),
            *(
                ("compensation of step", i, exc)
                for i, exc in sorted(self.compensation_raised.items())
            ),
        ]
        if not errors:
            return None
        (_, _, first), *others = errors
        for role, index, other in others:
            first.add_note(f"py_saga: {role} {index} raised {other!r} too")
        return first


class Saga(StatefulEntity):
    """Steps run concurrently; if one fails, the succeeded ones are compensated."""

    def __init__(self, steps: Sequence[Step] | None = None) -> None:
        if steps is None:
            steps = []
        if not isinstance(steps, Sequence):
            raise ValueError(  # noqa: TRY004 - py-saga raises ValueError
                f"Saga: steps must be a list of Step, got {steps!r}"
            )
        self._steps: list[Step] = []
        for step in steps:
            self.add_step(step)
        super().__init__()

    def add_step(self, *args: Any, **kwargs: Any) -> None:
        """Add a :class:`Step`, or a step built from ``(func, compensation)``."""
        step = Step.from_args(*args, **kwargs)
        if step is None:
            raise ValueError(
                f"add_step takes a Step or (func, compensation) callables, got {args!r}"
            )
        self._steps.append(step)

    async def run(
        self, *args: Any, executor: Executor | None = None, **kwargs: Any
    ) -> None:
        """Run every step with these arguments; compensate if one failed.

        The saga ends :attr:`State.SUCCESS` or :attr:`State.FAILURE`. What a
        step or a compensation raised is raised again once all is done.
        """
        self._state = State.RUNNING
        run = _Run(list(self._steps), args, kwargs)
        try:
            if run.steps:
                await self._run(run, executor)
        except BaseException:
            self._state = State.FAILURE
            raise
        self._state = State.FAILURE if run.failed else State.SUCCESS
        error = run.first_error()
        if error is not None:
            raise error

    @staticmethod
    async def _run(run: _Run, executor: Executor | None) -> None:
        definition = run.definition()
        token = _EXECUTOR.set(executor)
        try:
            orchestrator = Orchestrator(InMemoryStore(), [definition])
            try:
                result = await orchestrator.run(definition)
            finally:
                await orchestrator.close()
        finally:
            _EXECUTOR.reset(token)
        if not (result.succeeded or run.failed):
            result.raise_for_status()  # the engine failed on its own: say so


__all__ = ["FuncStep", "Saga", "State", "StatefulEntity", "Step"]
