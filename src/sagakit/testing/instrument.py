"""Instrumented definitions and participants: every local action and
compensation, and every participant handler, recorded in a
:class:`~sagakit.testing.run_record.RunRecord` and failed where the
checked failure point says."""

from __future__ import annotations

import asyncio
import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel

from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga, Step
from sagakit.definition.subsaga import SubSaga
from sagakit.messaging.envelope import Envelope
from sagakit.participant.service import CommandRejected, Participant
from sagakit.ports.store import SagaStore
from sagakit.ports.transport import Transport
from sagakit.testing.lineage import path_of
from sagakit.testing.points import InjectedFailure
from sagakit.testing.run_record import GENERATION, RunRecord


def _local(
    run: RunRecord,
    spec: Step,
    kind: Literal["action", "compensation"],
    prefix: str = "",
) -> Any:
    fn = spec.action if kind == "action" else spec.compensate
    assert callable(fn)  # noqa: S101 - only called for local callables
    name = prefix + spec.name

    async def call(*args: Any, **kwargs: Any) -> Any:
        if GENERATION.get() in run.dead:
            raise asyncio.CancelledError  # a dead process starts nothing
        attempt = run.next_attempt(name, kind)
        run.record(name, kind, attempt, "started")
        injection = run.point.injection(name, kind)
        if injection is not None and injection.fails(attempt):
            run.record(name, kind, attempt, "injected")
            raise InjectedFailure(f"{name} {kind} (attempt {attempt})")
        try:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            run.record(name, kind, attempt, "failed")
            raise
        run.record(name, kind, attempt, "ok")
        return value

    # the signature of ``fn`` (through ``__wrapped__``) tells the step what
    # to pass: the compensation's own result, ``results``
    return functools.wraps(fn)(call)


def instrument(saga: Saga[Any], run: RunRecord, prefix: str = "") -> Saga[Any]:
    """The same saga with every local action and compensation recorded and
    failing where the point says; the steps of a sub-saga (instrumented
    too) are recorded as ``<step>/<child step>``."""

    def wrap(spec: Step) -> Step:
        changes: dict[str, Any] = {}
        if isinstance(spec.action, SubSaga):
            sub = spec.action
            child = instrument(sub.saga, run, f"{prefix}{spec.name}/")
            changes["action"] = SubSaga(child, context=sub.context, output=sub.output)
            if spec.rolls_back_child:
                changes["compensate"] = changes["action"]
        elif not isinstance(spec.action, Remote):
            changes["action"] = _local(run, spec, "action", prefix)
        local = not isinstance(spec.compensate, Remote | SubSaga)
        if spec.compensate is not None and local:
            changes["compensate"] = _local(run, spec, "compensation", prefix)
        return replace(spec, **changes)

    return saga.rebuilt(wrap)


# -- remote participants --------------------------------------------------------


def _stub_value(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is not None:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (list, tuple, set, Sequence):
            return []
        if origin is dict:
            return {}
        return _stub_value(args[0]) if args else None
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return _stub_reply(annotation)
        for kind, value in ((bool, True), (int, 1), (float, 1.0), (str, "stub")):
            if issubclass(annotation, kind):
                return value
    return None


def _stub_reply(model: type[BaseModel] | None) -> dict[str, Any]:
    """A plausible reply for ``model``: defaults, or a simple value per field."""
    if model is None:
        return {}
    data = {
        name: _stub_value(info.annotation)
        for name, info in model.model_fields.items()
        if info.is_required()
    }
    try:
        return model.model_validate(data).model_dump(mode="json")
    except Exception:  # a constrained field: the user should pass participants
        return data


def _stub_handler(reply: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    def handler(payload: dict[str, Any]) -> dict[str, Any]:
        return dict(reply)

    return handler


def stubs(
    saga: Saga[Any], transport: Transport, store: SagaStore, covered: set[str]
) -> list[Participant]:
    """Participants that succeed for every remote command nobody else handles."""
    by_queue: dict[str, Participant] = {}
    for spec in (s for one in (saga, *saga.family) for s in one):
        cancel = spec.action.on_timeout if isinstance(spec.action, Remote) else None
        for target in (spec.action, spec.compensate, cancel):
            if not isinstance(target, Remote) or target.destination in covered:
                continue
            queue = target.destination
            part = by_queue.get(queue)
            if part is None:
                part = by_queue[queue] = Participant(
                    f"stub.{queue}", transport, store, queue=queue, prefetch=4
                )
            if target.command in part.commands:
                continue
            reply = _stub_reply(target.reply if target is spec.action else None)
            part.handler(target.command)(_stub_handler(reply))
    return list(by_queue.values())


def instrument_participant(part: Participant, run: RunRecord, root: str) -> None:
    """Record each handler execution and fail it where the point says (a
    command of a sub-saga of the saga ``root`` as ``<step>/<child step>``)."""
    handlers = part._handlers
    for command, spec in list(handlers.items()):
        original, wants_message = spec.fn, spec.wants_message

        async def handle(
            payload: Any,
            message: Envelope,
            _fn: Callable[..., Any] = original,
            _wants: bool = wants_message,
        ) -> Any:
            step = path_of(root, message.saga_id) + (message.step or "?")
            kind: Literal["action", "compensation"] = (
                "compensation" if message.compensation else "action"
            )
            attempt = message.attempt or 1
            run.record(
                step, kind, attempt, "started", remote=True, message_id=message.id
            )
            injection = run.point.injection(step, kind)
            if injection is not None and injection.fails(attempt):
                run.record(
                    step, kind, attempt, "injected", remote=True, message_id=message.id
                )
                if injection.mode == "reject":
                    raise CommandRejected(f"{step} {kind} rejected by the checker")
                raise InjectedFailure(f"{step} {kind} (attempt {attempt})")
            try:
                value = _fn(payload, message) if _wants else _fn(payload)
                if inspect.isawaitable(value):
                    value = await value
            except Exception:
                run.record(
                    step, kind, attempt, "failed", remote=True, message_id=message.id
                )
                raise
            run.record(step, kind, attempt, "ok", remote=True, message_id=message.id)
            return value

        handlers[command] = replace(spec, fn=handle, wants_message=True)
