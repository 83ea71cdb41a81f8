"""One saga object's dealings with sagakit's engine.

:class:`Flow` builds the sagakit definition of a saga object's ``steps`` (a
step's action and compensation call the object's ``run_step`` and
``compensate_step``), starts runs, applies replies, and turns what the engine
commits into saga-framework's callbacks, in saga-framework's order:

- a sync step that raised: ``compensate(step, payload)``, then the engine
  runs ``compensate_step`` for each earlier step, last first, then
  ``on_saga_failure`` (or ``on_compensation_failure``);
- a success reply: ``step.on_success`` before the reply is applied, then the
  steps that follow; a failure reply: ``step.on_failure`` and ``compensate``
  before it is applied, then the rollback. A callback that raises there
  leaves the reply unapplied, as saga-framework leaves the saga where it was;
- the end: ``on_saga_success``, ``on_saga_failure`` or
  ``on_compensation_failure``.

A reply the newest run is not waiting for (a duplicate, or one for a step that
already ended) is dropped: saga-framework would run the next steps again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from sagakit.compat.saga_framework.runtime import (
    Reply,
    Session,
    call_sync,
    defer,
    session,
)
from sagakit.compat.saga_framework.utils import failure_payload, serialize_saga_error
from sagakit.definition.remote import Remote
from sagakit.definition.saga import DictContext, Saga, Step
from sagakit.engine.state import SagaStatus, StepStatus
from sagakit.errors import SagaError
from sagakit.messaging.envelope import Envelope
from sagakit.ports.store import HistoryEntry, SagaRecord

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from sagakit.compat.saga_framework.base_saga import BaseSaga, BaseStep

logger = logging.getLogger("sagakit.compat.saga_framework")

NO_REPLY_TIMEOUT = 30 * 24 * 3600.0
"""saga-framework waits for a reply forever; sagakit records a deadline."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")
_COMMAND = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)*$")


class RemoteStepError(SagaError):
    """Stands for an exception raised in another process (or before a restart)."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a new run starts: the steps before ``index`` count as done;
    the step at ``index`` runs (``run``), only waits for its reply
    (``wait``), or fails with the payload given to ``compensate`` (``fail``)."""

    index: int
    mode: Literal["run", "wait", "fail"] = "run"


Verdict = Literal["apply", "adopt", "wait", "drop"]


def _judge(record: SagaRecord | None, step: str, fingerprint: str) -> Verdict:
    if record is None or record.fingerprint not in (None, fingerprint):
        return "adopt"  # not known here (another process's memory, or a new shape)
    if record.status.terminal:
        return "drop"
    state = record.state.steps.get(step)
    if state is None or state.status is StepStatus.PENDING:
        return "wait"  # its start may not be committed yet
    return "apply" if state.status is StepStatus.RUNNING else "drop"


def _sagakit_name(name: object, taken: set[str], fallback: str) -> str:
    text = str(name)
    chosen = text if _NAME.match(text) and text not in taken else fallback
    taken.add(chosen)
    return chosen


def _jsonable(payload: Any) -> dict[str, Any]:
    """A reply payload as the step's recorded result (if it is a JSON object)."""
    if not isinstance(payload, dict):
        return {}
    try:
        json.dumps(payload)
    except (TypeError, ValueError):
        return {}
    return payload


class Flow:
    """Runs ``saga`` (a :class:`BaseSaga`) on sagakit, one call at a time."""

    def __init__(self, saga: BaseSaga) -> None:
        self.saga = saga
        self.position: Position | None = None
        self.failure_payload: Any = None
        self.marking = False
        """``compensate`` is being called as the engine starts the rollback."""
        self.replying: str | None = None
        self.raised: dict[str, BaseException] = {}
        self.compensation_error: BaseException | None = None
        self.errors: list[BaseException] = []
        self.steps: dict[str, BaseStep] = {}

    # -- names and the definition -------------------------------------------

    @property
    def saga_name(self) -> str:
        saga = self.saga
        name = saga.saga_name or type(saga).__name__
        return name if _NAME.match(name) else "saga_framework_saga"

    @property
    def base(self) -> str:
        return f"{self.saga_name}:{self.saga.saga_id}"

    def definition(self) -> Saga[DictContext]:
        """The sagakit definition of the saga object's steps, as they are now."""
        taken: set[str] = set()
        self.steps = {}
        built = []
        for index, step in enumerate(self.saga.steps):
            name = _sagakit_name(step.name, taken, f"step_{index + 1}")
            self.steps[name] = step
            built.append(self._step(index, name, step))
        return Saga(self.saga_name, built)

    def name_of(self, step: BaseStep) -> str:
        for name, each in self.steps.items():
            if each is step:
                return name
        for name, each in self.steps.items():  # a step of another saga object
            if each.name == step.name:
                return name
        raise KeyError(f"no step found with name {step.name}")

    def _step(self, index: int, name: str, step: BaseStep) -> Step:
        from sagakit.compat.saga_framework.base_saga import SyncStep  # noqa: PLC0415

        compensate = self._compensation(step)
        retry = self.saga.compensation_retry
        if isinstance(step, SyncStep):

            async def action(_: DictContext) -> None:
                if self._runs(index, name):
                    self._run(name, step)

            return Step(name, action, compensate=compensate, compensation_retry=retry)

        def build(_: DictContext) -> dict[str, Any]:
            position = self.position
            if self._runs(index, name) and (
                position is None or (index, position.mode) != (position.index, "wait")
            ):
                self._run(name, step)  # the action sends the Celery task itself
            return {}

        task = str(getattr(step, "base_task_name", "") or "")
        command = f"celery.{task}" if _COMMAND.match(task) else "celery.task"
        return Step(
            name,
            Remote(command, payload=build),
            compensate=compensate,
            compensation_retry=retry,
            timeout=NO_REPLY_TIMEOUT,
        )

    def _runs(self, index: int, name: str) -> bool:
        """False for a step a positioned run takes as done; raises for the
        step ``compensate`` was called for."""
        position = self.position
        if position is None or index > position.index:
            return True
        if index < position.index:
            return False
        if position.mode == "fail":
            raise RemoteStepError(
                f"saga {self.saga.saga_id}: compensate() was called for step {name}"
            )
        return True

    def _run(self, name: str, step: BaseStep) -> None:
        try:
            self.saga.run_step(step)
        except Exception as exc:
            self.raised[name] = exc
            raise

    def _compensation(self, step: BaseStep) -> Callable[[DictContext], Any]:
        async def compensation(_: DictContext) -> None:
            try:
                self.saga.compensate_step(step, self.failure_payload)
            except Exception as exc:
                self.compensation_error = exc
                raise

        return compensation

    # -- what the engine committed ------------------------------------------

    def guarded(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call a callback; what it raises is raised once the call ends."""
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            self.errors.append(exc)

    def mark(self, step: BaseStep, payload: Any) -> None:
        """``compensate(step, payload)``: the engine rolls back right after."""
        self.marking = True
        try:
            self.saga.compensate(step, payload)
        finally:
            self.marking = False

    def step_finished(self, entry: HistoryEntry) -> None:
        if entry.kind != "action" or entry.outcome not in ("failed", "timed_out"):
            return
        name = entry.step or ""
        if name == self.replying or name not in self.steps:
            return  # a reply: its callbacks ran before it was applied
        raised = self.raised.pop(name, None)
        self.failure_payload = (
            asdict(serialize_saga_error(raised))
            if raised is not None
            else failure_payload(None, entry.error)
        )
        self.guarded(self.mark, self.steps[name], self.failure_payload)

    def saga_finished(self, status: SagaStatus, failed_step: str | None) -> None:
        saga = self.saga
        if status is SagaStatus.SUCCEEDED:
            self.guarded(saga.on_saga_success)
            return
        failed = self.steps.get(failed_step or "")
        if failed is None:
            return  # cancelled by an operator: no saga-framework callback fits
        payload = self.failure_payload
        error: BaseException
        if status is not SagaStatus.COMPENSATION_FAILED:
            try:
                saga.on_saga_failure(failed, payload)
            except Exception as exc:  # as saga-framework: reported as below
                error = exc
            else:
                return
        else:
            error = self.compensation_error or RemoteStepError(
                f"saga {saga.saga_id}: a compensation failed"
            )
        self.guarded(
            saga.on_compensation_failure,
            initially_failed_step=failed,
            initial_failure_payload=payload,
            compensation_failed_step=failed,  # saga-framework passes this one
            compensation_exception=error,
        )

    def raise_errors(self) -> None:
        if self.errors:
            first, *others = self.errors
            self.errors = []
            for other in others:
                logger.error(
                    "another saga callback failed too",
                    exc_info=other,
                    extra={"action": "callback_failed", "saga_id": self.saga.saga_id},
                )
            raise first

    # -- calls ----------------------------------------------------------------

    async def start(self, position: Position) -> None:
        """Run the saga again from ``position`` (``execute``)."""
        async with self.driving() as s:
            await self._start_in(s, position)

    async def _start_in(self, s: Session, position: Position) -> str:
        self.position = position
        try:
            run_id = await s.start()
            await s.settle()
            skipped = list(self.steps)[: position.index]
            while (waiting := await _waiting(s, run_id, skipped)) is not None:
                record, name = waiting
                await s.reply(self._reply(record, s.definition, name, True, {}))
                await s.settle()
        finally:
            self.position = None
        return run_id

    def receive(
        self, step: BaseStep, ok: bool, payload: Any, *, hooks: bool = True
    ) -> None:
        """A step handler's reply (``hooks``: run ``on_success`` or
        ``on_failure`` and ``compensate`` first); without ``hooks``, what
        ``compensate`` asks: fail ``step`` and roll back."""
        self.definition()
        reply = Reply(self.name_of(step), ok, payload, hooks)
        if defer(self.base, reply):
            return  # this process drives the saga right now: applied after
        call_sync(self._receive(reply))

    async def _receive(self, reply: Reply) -> None:
        async with self.driving() as s:
            await self.apply(s, reply)

    @contextlib.asynccontextmanager
    async def driving(self) -> AsyncIterator[Session]:
        """A :func:`session` on the saga's store for the block; then what its
        callbacks raised, raised (:meth:`raise_errors`)."""
        definition = self.definition()
        async with session(self.saga.store_url, definition, self, self.base) as s:
            yield s
        self.raise_errors()

    async def apply(self, s: Session, reply: Reply) -> None:
        """Apply ``reply`` in session ``s`` (also a deferred one)."""
        definition = s.definition
        name, ok, payload = reply.step, reply.ok, reply.payload
        step = self.steps[name]
        index = list(self.steps).index(name)
        deadline = asyncio.get_running_loop().time() + self.saga.reply_wait
        pause = 0.01
        while True:
            record = await s.latest()
            verdict = _judge(record, name, definition.fingerprint)
            if not reply.hooks and verdict != "apply":
                self.failure_payload = payload
                self.replying = name
                try:
                    await self._start_in(s, Position(index, "fail"))
                finally:
                    self.replying = None
                return
            if verdict == "adopt":
                run_id = await self._start_in(s, Position(index, "wait"))
                record = await s.store.get(run_id)
            elif verdict == "wait" and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.25)
                continue
            elif verdict != "apply":
                logger.info(
                    "reply dropped: the saga is not waiting for it",
                    extra={
                        "action": "reply_dropped",
                        "saga_id": self.saga.saga_id,
                        "step": step.name,
                        "ok": ok,
                    },
                )
                return
            break
        assert record is not None  # noqa: S101 - adopted or applied
        if reply.hooks and ok:
            step_on(step, "on_success")(step, payload)  # raises: not applied
        elif reply.hooks:
            step_on(step, "on_failure")(step, payload)
            self.mark(step, payload)
        if not ok:
            self.failure_payload = payload
        self.replying = name
        try:
            await s.reply(self._reply(record, definition, name, ok, payload))
            await s.settle()
        finally:
            self.replying = None

    def _reply(
        self,
        record: SagaRecord,
        definition: Saga[DictContext],
        name: str,
        ok: bool,
        payload: Any,
    ) -> Envelope:
        state = record.state.steps.get(name)
        attempt = max(1, state.attempts if state is not None else 1)
        action = definition.step(name).action
        error = None
        if not ok:
            raw = payload if isinstance(payload, dict) else {"message": str(payload)}
            error = {
                "type": str(raw.get("type") or "RemoteError"),
                "message": str(raw.get("message") or ""),
            }
        return Envelope(
            kind="reply",
            type=action.command if isinstance(action, Remote) else "celery.task",
            correlation_id=f"{record.saga_id}:{name}:{attempt}",
            saga_id=record.saga_id,
            step=name,
            attempt=attempt,
            ok=ok,
            payload=_jsonable(payload) if ok else {},
            error=error,
        )


def step_on(step: BaseStep, which: str) -> Callable[..., Any]:
    """An async step's ``on_success``/``on_failure`` (nothing for other steps)."""
    fn = getattr(step, which, None)
    return fn if callable(fn) else _nothing


def _nothing(*args: Any) -> None:
    return None


async def _waiting(
    s: Session, run_id: str, names: list[str]
) -> tuple[SagaRecord, str] | None:
    """The first of ``names`` that run ``run_id`` waits on a reply for."""
    if not names:
        return None
    record = await s.store.get(run_id)
    for name in names:
        state = record.state.steps.get(name)
        if state is not None and state.status is StepStatus.RUNNING:
            return record, name
    return None


__all__ = ["Flow", "Position", "RemoteStepError"]
