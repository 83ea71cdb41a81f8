"""Commands sent without waiting for a reply, written in the transition's commit.

Two kinds (see :class:`~sagakit.definition.remote.Remote`):

* a fire-and-forget compensation (``awaited=False``): once its outbox row is
  built, the engine counts it as succeeded (:func:`sagakit.engine.unawaited.sent`)
  in the same commit, which may start further compensations, and so on;
* an action's ``on_timeout`` command (the engine's ``SendCancel``), sent when
  the action's reply deadline passed.

Both name no ``reply_to``; each gets a history line (``sent``). Message ids
are fixed by (saga, step, attempt), so a command re-sent after a crash is
dropped by the participant's inbox. A cancel whose payload cannot be built
is recorded as a ``failed`` line and logged: the step fails anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga
from sagakit.definition.signature import call_shape
from sagakit.engine.commands import (
    Command,
    Compensate,
    Decision,
    RunStep,
    SendCancel,
)
from sagakit.engine.results import results_kwargs
from sagakit.engine.state import SagaState
from sagakit.engine.unawaited import sent, unawaited
from sagakit.errors import error_info
from sagakit.messaging.envelope import Envelope
from sagakit.observability.observer import NOOP, Observer, StepRun
from sagakit.ports.store import HistoryEntry, OutboxMessage
from sagakit.runtime.remote import command_messages, outbox_message

logger = logging.getLogger("sagakit.runtime.orchestrator")

CANCEL = "cancel"
"""The history ``kind`` of an ``on_timeout`` command sent."""


@dataclass(slots=True)
class Outgoing:
    """A decision as it is committed, with what it writes to the outbox.

    ``decision`` includes the successes of the fire-and-forget compensations
    sent (and what they issued); ``entries`` are the history lines of the
    commands sent without a reply wait; ``unsendable`` the awaited or
    fire-and-forget commands whose message could not be built, with the
    error (reported as failed attempts after the commit)."""

    decision: Decision
    messages: list[OutboxMessage] = field(default_factory=list)
    unsendable: list[tuple[RunStep | Compensate, Exception]] = field(
        default_factory=list
    )
    entries: list[HistoryEntry] = field(default_factory=list)


def outgoing(
    saga: Saga[Any],
    decision: Decision,
    context: BaseModel,
    *,
    reply_to: str,
    now: float,
    observer: Observer = NOOP,
    trace: Mapping[str, str] | None = None,
    reply_key: str | None = None,
) -> Outgoing:
    """What committing ``decision`` sends, and the decision it becomes once
    its fire-and-forget compensations count as done."""
    out = Outgoing(decision)
    if not saga.sends:  # only remote steps send (and time out, and go unawaited)
        return out
    commands: tuple[Command, ...] = decision.commands
    while commands:
        state = out.decision.state
        for command in commands:  # first: before what the timeout leads to
            if isinstance(command, SendCancel):
                _cancel(
                    saga,
                    state,
                    context,
                    command,
                    out,
                    now=now,
                    observer=observer,
                    trace=trace,
                )
        built = command_messages(
            saga,
            state,
            context,
            commands,
            reply_to=reply_to,
            now=now,
            observer=observer,
            trace=trace,
            reply_key=reply_key,
        )
        out.messages.extend(built.messages)
        out.unsendable.extend(built.unsendable)
        failed = {command for command, _ in built.unsendable}
        done: list[Compensate] = []
        for command in commands:
            remote = unawaited(saga, command)
            if remote is not None and command not in failed:
                assert isinstance(command, Compensate)  # noqa: S101 - unawaited()
                done.append(command)
                out.entries.append(_line(state, command, remote, now))
        if not done:
            break
        issued = len(out.decision.commands)
        out.decision = sent(saga, out.decision, done, now)
        commands = out.decision.commands[issued:]
    return out


def cancel_id(saga_id: str, step: str, attempt: int) -> str:
    """The message id of the ``on_timeout`` command of ``step``'s ``attempt``."""
    return f"{saga_id}.{step}.t{attempt}"


def _cancel(
    saga: Saga[Any],
    state: SagaState,
    context: BaseModel,
    command: SendCancel,
    out: Outgoing,
    *,
    now: float,
    observer: Observer,
    trace: Mapping[str, str] | None,
) -> None:
    action = saga.step(command.step).action
    assert isinstance(action, Remote)  # noqa: S101 - issued for remote actions
    remote = action.on_timeout
    assert remote is not None  # noqa: S101 - issued when there is one
    saga_id = state.saga_id
    call = StepRun(saga.name, saga_id, command.step, "action", command.attempt)
    wants = remote.payload is not None and call_shape(remote.payload).results
    try:
        message = outbox_message(
            call,
            remote,
            (context,),
            results_kwargs(saga, state, wanted=wants),
            message_id=cancel_id(saga_id, command.step, command.attempt),
            reply_to=None,
            now=now,
            observer=observer,
            trace=trace,
        )
    except Exception as exc:  # the step fails anyway; say why nothing was sent
        logger.warning(
            "on_timeout command not sent: its payload could not be built",
            extra={
                "action": "cancel_unsendable",
                "saga_id": saga_id,
                "step": command.step,
                "error": str(exc),
            },
        )
        out.entries.append(_line(state, command, remote, now, exc))
        return
    out.messages.append(message)
    out.entries.append(_line(state, command, remote, now))


def _line(
    state: SagaState,
    command: Compensate | SendCancel,
    remote: Remote,
    now: float,
    exc: Exception | None = None,
) -> HistoryEntry:
    kind = "compensation" if isinstance(command, Compensate) else CANCEL
    return HistoryEntry(
        saga_id=state.saga_id,
        step=command.step,
        kind=kind,
        attempt=command.attempt,
        outcome="sent" if exc is None else "failed",
        started_at=now,
        finished_at=now,
        result={"command": remote.command, "queue": remote.destination},
        error=None if exc is None else error_info(exc),
    )


def ignored_reply(saga: Saga[Any], message: Envelope) -> bool:
    """``message`` answers a command the saga did not wait for a reply to
    (a fire-and-forget compensation, an ``on_timeout`` command)."""
    if message.step is None or not saga.has_step(message.step):
        return False
    spec = saga.step(message.step)
    if message.compensation:
        target = spec.compensate
        return isinstance(target, Remote) and not target.awaited
    action = spec.action
    return (
        isinstance(action, Remote)
        and action.on_timeout is not None
        and message.type == action.on_timeout.command != action.command
    )
