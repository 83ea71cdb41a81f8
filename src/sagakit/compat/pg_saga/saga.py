"""pg-saga's ``Saga`` (``from saga import Saga``) on sagakit's workflow engine.

A ``Saga`` is a :class:`~sagakit.workflow.WorkflowApp` of the same name; each
``@saga.step`` function is one of its steps, called as pg-saga calls it:
``(input, state, set_state, logger)``. What it returns decides what happens:
a call of a step (``credit(input)``, ``credit(input, state, delay=5)``, or a
:class:`SagaReturn`) is the instance's next pending call; anything else ends
the instance, that value (unless None) becoming its state. Raising
:class:`SagaError` fails it for good; any other exception runs the step
again later.

The instance, its pending call and its state are one row of sagakit's
workflow tables (PostgreSQL, SQLite, or memory), as JSON
(:mod:`~sagakit.compat.pg_saga.codec`), committed with the step's outcome
in one transaction.

Where sagakit differs from pg-saga 0.1.7 on purpose:

- a step that raises is run again after a delay that doubles from
  ``retry_delay`` (1 s) up to ``max_retry_delay`` (5 min), not at once
  forever (pg-saga puts it back as due now: a failing step spins);
- an instance waiting on a step this process does not register is left
  alone (pending, marked waiting with the reason) for a process that has the
  step; pg-saga takes it and leaves it in progress for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import traceback
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

from sagakit.adapters.store.database import Database, open_database
from sagakit.adapters.store.workflow_memory import InMemoryWorkflowStore
from sagakit.compat.pg_saga import instances
from sagakit.compat.pg_saga.codec import decode, encode
from sagakit.compat.pg_saga.logger import LogEntry, Logger, LogLevel
from sagakit.errors import DefinitionError, FatalError
from sagakit.ports.clock import Clock
from sagakit.ports.workflow_store import WorkflowStore
from sagakit.workflow import WorkflowApp
from sagakit.workflow.commit import GroupSaves
from sagakit.workflow.step import WorkflowCall
from sagakit.workflow.versions import claim_due

UNLIMITED = 2**31
"""``max_attempts=None``: as pg-saga, a failing step is retried until it
succeeds or raises SagaError (with a growing delay)."""

TInput = TypeVar("TInput")
TState = TypeVar("TState")


@dataclasses.dataclass
class SagaReturn:
    """The next call of a saga: ``step`` (a name) with ``input``; ``state``
    replaces the instance's state when not None; ``delay`` in seconds."""

    step: str
    input: Any
    state: Any = None
    delay: float | None = None


class SagaError(FatalError):
    """Raise it from a step to end the saga as failed (no retry)."""


LogHandler = Callable[[AsyncGenerator[LogEntry, None]], Coroutine[Any, Any, None]]


async def default_log_handler(log: AsyncGenerator[LogEntry, None]) -> None:
    """Reads the log and drops it."""
    async for _ in log:
        pass


class _DAL:
    """``saga._dal``: what pg-saga's README calls on it."""

    def __init__(self, saga: Saga) -> None:
        self._saga = saga

    async def init_db(self) -> None:
        await self._saga.init_db()


class Saga:
    """A named saga: its steps, and the loop that runs its instances.

    ``dsn`` (or ``dal``, pg-saga's second argument) is a database URL,
    ``postgresql://...``, ``sqlite:///file.db`` or ``memory://`` (``dal`` may
    also be an open sagakit ``WorkflowStore``); None: ``$SAGAKIT_DATABASE_URL``
    or ``./sagakit.db``. The tables are created on first use.

    sagakit additions, all optional: ``max_attempts`` (None: retry a failing
    step until it succeeds or raises SagaError), ``retry_delay`` and
    ``max_retry_delay`` (the growing wait between attempts), ``clock``.
    """

    def __init__(
        self,
        name: str,
        dal: str | WorkflowStore | None = None,
        dsn: str | None = None,
        *,
        max_attempts: int | None = None,
        retry_delay: float = 1.0,
        max_retry_delay: float = 300.0,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.runner = uuid.uuid4().hex
        self._where: str | WorkflowStore | None = dal if dal is not None else dsn
        self._database: Database | None = None
        self._app = WorkflowApp(
            name,
            _Unopened(),
            clock=clock,
            max_attempts=UNLIMITED if max_attempts is None else max_attempts,
            retry_delay=retry_delay,
            max_retry_delay=max_retry_delay,
            worker_id=f"pg-saga-{self.runner[:12]}",
            log_handler=self._forward,
        )
        self._functions: dict[str, Callable[..., Any]] = {}
        self._opened = False
        self._opening: asyncio.Lock | None = None
        self._event_loop_started = False
        self._wake: asyncio.Event | None = None
        self._logger = Logger(name, self.runner)
        self._dal = _DAL(self)
        self.step = self._step

    # -- steps -----------------------------------------------------------------

    def _step(self, func: Callable[..., Any]) -> Callable[..., SagaReturn]:
        """Register ``func`` as a step; returns a function that makes a call of
        it: ``step(input, state=None, delay=None)`` is a :class:`SagaReturn`."""
        name: str = func.__name__
        self._functions[name] = func
        self._app.steps.pop(name, None)  # as pg-saga: a step defined again replaces
        self._app.step(self._runner_for(name, func))

        def call_of(
            input: Any, state: Any = None, delay: float | None = None
        ) -> SagaReturn:
            return SagaReturn(name, input, state, delay)

        call_of.__name__ = call_of.__qualname__ = name
        call_of.__doc__ = func.__doc__
        return call_of

    def _runner_for(
        self, name: str, func: Callable[..., Any]
    ) -> Callable[..., Awaitable[Any]]:
        arity = _arity(func)

        async def run(raw_input: Any, raw_state: Any, set_state: Any, log: Any) -> Any:
            instance = log.extra.get("instance_id")
            logger = self._logger.with_context(None, instance, name)
            state = decode(raw_state.get("value"))

            def save_state(new: Any) -> _Done:
                set_state({"value": encode(new)})
                return _Done()

            logger.log_info("Executing", source="saga_wrapper")
            args = (decode(raw_input), state, save_state, logger)[:arity]
            try:
                if inspect.iscoroutinefunction(func):
                    returned = await func(*args)
                else:
                    returned = await asyncio.to_thread(func, *args)
                    if inspect.isawaitable(returned):
                        returned = await returned
            except SagaError as exc:
                logger.log_info("Returning SagaError", exc)
                raise
            except Exception as exc:
                logger.log_error(exc, traceback.format_exc())
                raise
            return self._outcome(logger, returned, set_state)

        run.__name__ = run.__qualname__ = name
        return run

    def _outcome(self, logger: Logger, returned: Any, set_state: Any) -> Any:
        """The workflow's next call, or the value the instance ends with."""
        if isinstance(returned, SagaReturn):
            step_name = _name_of(returned.step)
            target = self._app.steps.get(step_name)
            if target is None:
                raise DefinitionError(
                    f"saga {self.name}: step {step_name!r} is not registered "
                    f"(steps: {', '.join(sorted(self._app.steps)) or 'none'})"
                )
            if returned.state is not None:
                set_state({"value": encode(returned.state)})
            delay = max(0.0, float(returned.delay or 0.0))
            logger.log_info("Updating Saga", new_step=step_name, delay=delay)
            return WorkflowCall(target, encode(returned.input), delay)
        if returned is not None:
            set_state({"value": encode(returned)})
        logger.log_info("Updating Saga", new_step=None, delay=None)
        return encode(returned)

    # -- instances -------------------------------------------------------------

    async def _store(self) -> WorkflowStore:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:  # one database, however many first uses race
            if not self._opened:
                where = self._where
                if isinstance(where, str | None) and where == "memory://":
                    self._app.store = InMemoryWorkflowStore()
                elif isinstance(where, str | None):
                    self._database = await open_database(where)
                    workflows = self._database.workflows
                    assert workflows is not None  # noqa: S101 - SQL keeps them
                    self._app.store = workflows
                else:
                    self._app.store = where
                # results are saved through the store just opened
                self._app.saves = GroupSaves(self._app.store)
                self._opened = True
        return self._app.store

    async def init_db(self) -> None:
        """Create sagakit's tables if they are missing (also done on first use)."""
        await self._store()

    async def close(self) -> None:
        """Close the database this saga opened (sagakit addition)."""
        if self._database is not None:
            await self._database.close()
            self._database = None
            self._opened = False

    async def start(
        self,
        instance: str,
        step: Callable[..., Any] | str,
        input: Any,
        state: Any,
        delay: float | None = None,
    ) -> None:
        """Start instance ``instance`` of this saga at ``step`` (a step or its
        name) with ``input`` and ``state``, due after ``delay`` seconds (now if
        None). An instance that exists already raises ``SagaAlreadyExists``."""
        store = await self._store()
        name = _name_of(step)
        logger = self._logger.with_context(None, instance, name)
        logger.log_info("Starting saga", delay=delay)
        await instances.create(
            self._app,
            store,
            instance,
            step=name,
            input=encode(input),
            state=encode(state),
            delay=delay,
        )
        logger.log_info("Started")
        self._nudge()

    async def call(
        self,
        instance: str,
        step: Callable[..., Any] | str,
        input: Any,
        delay: float | None = None,
    ) -> None:
        """Make a pending instance's next call ``step(input)``, due after
        ``delay`` seconds (now if None); its state is kept. A running
        instance raises ``ConcurrencyError``, a finished one ``StateError``."""
        store = await self._store()
        name = _name_of(step)
        self._logger.with_context(None, instance, name).log_trace(
            "Updating", delay=delay, source="call"
        )
        await instances.deliver(
            self._app, store, instance, step=name, input=encode(input), delay=delay
        )
        self._nudge()

    async def get_state(self, instance: str) -> Any:
        """The instance's state (``SagaNotFound`` if there is none)."""
        store = await self._store()
        self._logger.with_context(None, instance, None).log_trace(
            "Getting state", source="get_state"
        )
        record = await store.get(self.name, instance)
        return decode(record.state.get("value"))

    # -- the loop --------------------------------------------------------------

    async def start_event_loop(  # noqa: PLR0917 - pg-saga's positional signature
        self,
        batch_size: int,
        low_watermark: int,
        backoff: float,
        available_workers: int,
        available_update_threads: int,
        health_check_timeout: int,
        log_handler: LogHandler = default_log_handler,
    ) -> None:
        """Run this saga's due instances until cancelled (then return).

        Up to ``available_workers`` steps run at once, claimed ``batch_size``
        at a time; with nothing due it looks again after ``backoff`` seconds
        (at once when this process starts or calls an instance). A step whose
        worker stops renewing its lease for ``health_check_timeout`` seconds
        runs again elsewhere. ``log_handler`` reads the log (an async
        iterator of :class:`LogEntry`). ``low_watermark`` and
        ``available_update_threads`` are accepted and unused: each outcome is
        committed by the step's own task."""
        app = self._app
        await self._store()
        app.batch = max(1, batch_size)
        app.max_active = max(1, available_workers)
        app.lease = max(1.0, float(health_check_timeout))
        if self._logger.logstream.ended:  # a loop ran before: a new stream
            self._logger = Logger(self.name, self.runner)
        stream = self._logger.logstream
        reader = asyncio.ensure_future(log_handler(stream))  # type: ignore[arg-type]
        self._wake = asyncio.Event()
        self._event_loop_started = True
        try:
            await _serve(app, self._wake, backoff)
        except asyncio.CancelledError:
            # as pg-saga: cancelling the loop ends it; the call returns
            self._logger.log_info("Event loop cancelled", source="start_event_loop")
        finally:
            self._event_loop_started = False
            self._wake = None
            self._logger.log_info("Event loop ended")
            stream.end()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await reader

    def _nudge(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _forward(self, record: logging.LogRecord) -> None:
        """sagakit's own warnings (retries, failures, waiting instances) as
        log entries too."""
        if record.levelno < logging.WARNING:
            return
        extra = {
            k: v
            for k, v in record.__dict__.items()
            if k in ("action", "error", "retrying", "reason", "status", "attempt")
        }
        self._logger.with_context(
            None, getattr(record, "instance_id", None), getattr(record, "step", None)
        )._log(
            LogLevel.ERROR if record.levelno >= logging.ERROR else LogLevel.WARN,
            record.getMessage(),
            record.exc_info[1] if record.exc_info else None,
            "sagakit",
            extra,
        )


async def _serve(app: WorkflowApp, wake: asyncio.Event, backoff: float) -> None:
    """Claim due instances and run them, ``app.max_active`` at a time."""
    from sagakit.errors import StoreError  # noqa: PLC0415
    from sagakit.workflow.runner import run_claimed  # noqa: PLC0415
    from sagakit.workflow.waiting import (  # noqa: PLC0415
        REPORT_INTERVAL,
        report_unregistered,
    )

    active: set[asyncio.Task[Any]] = set()
    try:
        while True:
            room = app.max_active - len(active)
            claimed = []
            if room > 0:
                try:
                    claimed = await claim_due(app, min(room, app.batch))
                except StoreError:
                    logging.getLogger(__name__).exception(
                        "claim failed", extra={"action": "claim_failed"}
                    )
            for version, record in claimed:
                task = asyncio.create_task(run_claimed(version, record))
                active.add(task)
                task.add_done_callback(active.discard)
            if claimed:
                continue
            if room > 0:
                await report_unregistered(app, every=REPORT_INTERVAL)
            wake.clear()
            waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(wake.wait())}
            try:
                await asyncio.wait(
                    waits | active, timeout=backoff, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for each in waits:
                    each.cancel()
    finally:
        for task in active:
            task.cancel()


def _arity(func: Callable[..., Any]) -> int:
    """How many of ``(input, state, set_state, logger)`` ``func`` takes."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return 4
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 4
    return min(
        4,
        len(
            [
                p
                for p in params
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        ),
    )


def _name_of(step: Any) -> str:
    name = step if isinstance(step, str) else getattr(step, "__name__", None)
    if not isinstance(name, str) or not name:
        raise DefinitionError(
            f"a saga step is a step function or its name, not {step!r}"
        )
    return name


class _Done:
    """What ``set_state`` returns: awaiting it (as pg-saga's async
    ``set_state`` wants) does nothing more; not awaiting it is fine too."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


class _Unopened:
    """The store of a Saga before its first use opens the database."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("the saga's database is opened on its first use")


__all__ = ["Saga", "SagaError", "SagaReturn", "default_log_handler"]
