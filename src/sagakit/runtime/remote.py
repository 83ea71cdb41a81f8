"""Remote steps at run time: commands out through the outbox, replies in as events.

Command message ids are fixed by (saga, step, attempt, action or
compensation), so publishing a command twice, or re-sending it after a
crash, is deduplicated by the participant's inbox.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga, Step
from sagakit.engine.commands import Command, Compensate, RunStep
from sagakit.engine.events import (
    CompensationAttemptFailed,
    CompensationSucceeded,
    Event,
    StepAttemptFailed,
    StepSucceeded,
)
from sagakit.engine.results import first_error, results_kwargs
from sagakit.engine.state import ErrorInfo, SagaState, StepStatus
from sagakit.errors import SagaError
from sagakit.messaging.envelope import Envelope, MalformedMessage, encode
from sagakit.observability.observer import NOOP, Observer, StepRun
from sagakit.ports.store import HistoryEntry, OutboxMessage
from sagakit.ports.transport import REPLY_KEY_HEADER

ISSUED_AT = "x-sagakit-issued-at"
"""Header with the time the command was issued; replies carry it back."""


def remote_of(saga: Saga[Any], command: RunStep | Compensate) -> Remote | None:
    spec = saga.step(command.step)
    target = spec.action if isinstance(command, RunStep) else spec.compensate
    return target if isinstance(target, Remote) else None


def command_id(saga_id: str, step: str, attempt: int, compensation: bool) -> str:
    return f"{saga_id}.{step}.{'c' if compensation else 'a'}{attempt}"


def command_message(
    saga: Saga[Any],
    state: SagaState,
    context: BaseModel,
    command: RunStep | Compensate,
    remote: Remote,
    *,
    reply_to: str,
    now: float,
    observer: Observer = NOOP,
    trace: Mapping[str, str] | None = None,
    reply_key: str | None = None,
) -> OutboxMessage:
    """The outbox row that sends ``command``; raises if the payload cannot be
    built (the caller turns that into a step failure). ``observer`` adds its
    headers (the trace context) to the message. A command sent without
    awaiting its reply (``awaited=False``) names no ``reply_to``; one that
    awaits it names ``reply_key`` too, if given: the key of the process
    whose own reply queue should get the reply (:data:`REPLY_KEY_HEADER`)."""
    compensation = isinstance(command, Compensate)
    spec = saga.step(command.step)
    args: tuple[Any, ...] = (context,)
    if compensation and spec.compensation_takes_result:
        args = (context, state.step(spec.name).result)
    wants = spec.action_wants_results
    if compensation:
        wants = spec.compensation_wants_results
    call = StepRun(
        saga.name,
        state.saga_id,
        spec.name,
        "compensation" if compensation else "action",
        command.attempt,
    )
    return outbox_message(
        call,
        remote,
        args,
        results_kwargs(saga, state, wanted=wants),
        message_id=command_id(state.saga_id, spec.name, command.attempt, compensation),
        reply_to=reply_to if remote.awaited else None,
        delay=command.delay,
        now=now,
        observer=observer,
        trace=trace,
        reply_key=reply_key if remote.awaited else None,
    )


def outbox_message(
    call: StepRun,
    remote: Remote,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    message_id: str,
    reply_to: str | None,
    now: float,
    delay: float = 0.0,
    observer: Observer = NOOP,
    trace: Mapping[str, str] | None = None,
    reply_key: str | None = None,
) -> OutboxMessage:
    """The outbox row that sends ``remote`` for ``call``, its payload built
    from ``args`` and ``kwargs``; raises if the payload cannot be built."""
    payload: Any = {} if remote.payload is None else remote.payload(*args, **kwargs)
    body = to_jsonable_python(payload) if payload is not None else {}
    if not isinstance(body, dict):
        raise SagaError(
            f"step {call.step!r}: the payload of {remote.command!r} must be a "
            f"pydantic model or a dict, got {type(payload).__name__}"
        )
    headers = {ISSUED_AT: repr(now + delay)}
    if reply_key is not None and reply_to is not None:
        headers[REPLY_KEY_HEADER] = reply_key
    headers.update(
        observer.command_headers(call, remote.command, remote.destination, trace)
    )
    message = Envelope(
        id=message_id,
        kind="command",
        type=remote.command,
        correlation_id=f"{call.saga_id}:{call.step}:{call.attempt}",
        saga_id=call.saga_id,
        step=call.step,
        attempt=call.attempt,
        compensation=call.kind == "compensation",
        reply_to=reply_to,
        payload=body,
        headers=headers,
        sent_at=now,
    )
    return OutboxMessage(
        message_id=message.id,
        destination=remote.destination,
        body=encode(message),
        available_at=now + delay,
        saga_id=call.saga_id,
    )


@dataclass(frozen=True, slots=True)
class CommandMessages:
    """The outbox rows for a decision's remote commands, and the commands
    whose message could not be built, each with the error."""

    messages: list[OutboxMessage]
    unsendable: list[tuple[RunStep | Compensate, Exception]]


def command_messages(
    saga: Saga[Any],
    state: SagaState,
    context: BaseModel,
    commands: Iterable[Command],
    *,
    reply_to: str,
    now: float,
    observer: Observer = NOOP,
    trace: Mapping[str, str] | None = None,
    reply_key: str | None = None,
) -> CommandMessages:
    """What ``commands`` (a decision's, ``state`` being its new state) send
    through the outbox; local commands and ``FinishSaga`` send nothing."""
    built = CommandMessages([], [])
    for command in commands:
        if not isinstance(command, RunStep | Compensate):
            continue
        remote = remote_of(saga, command)
        if remote is None:
            continue
        try:
            message = command_message(
                saga,
                state,
                context,
                command,
                remote,
                reply_to=reply_to,
                now=now,
                observer=observer,
                trace=trace,
                reply_key=reply_key,
            )
        except Exception as exc:  # the caller reports it
            built.unsendable.append((command, exc))
        else:
            built.messages.append(message)
    return built


@dataclass(frozen=True, slots=True)
class ReplyEvent:
    event: Event
    entry: HistoryEntry


def _issued_at(message: Envelope, default: float) -> float:
    try:
        return float(message.headers.get(ISSUED_AT, default))
    except ValueError:
        return default


def reply_event(
    saga: Saga[Any], message: Envelope, *, now: float, jitter: float
) -> ReplyEvent:
    """Turn a reply into the engine event it stands for (and its history line).

    Raises ``MalformedMessage`` for a reply that cannot belong to this saga.
    """
    if message.kind != "reply":
        raise MalformedMessage(f"expected a reply, got a {message.kind}")
    if message.ok is None:
        raise MalformedMessage(f"reply {message.id} says neither ok true nor false")
    if message.saga_id is None or message.step is None:
        raise MalformedMessage("a reply must name its saga_id and step")
    if not saga.has_step(message.step):
        raise MalformedMessage(
            f"saga {saga.name!r} has no step {message.step!r} (reply {message.id})"
        )
    spec = saga.step(message.step)
    kind = "compensation" if message.compensation else "action"
    started = _issued_at(message, now)

    def entry(outcome: str, **extra: Any) -> HistoryEntry:
        return HistoryEntry(
            saga_id=message.saga_id or "",
            step=spec.name,
            kind=kind,
            attempt=message.attempt,
            outcome=outcome,
            started_at=started,
            finished_at=now,
            **extra,
        )

    if not message.ok:
        raw = message.error or {}
        info = ErrorInfo(
            str(raw.get("type", "RemoteError")), str(raw.get("message", ""))
        )
        retryable = bool(raw.get("retryable", False))
        if message.compensation:
            event: Event = CompensationAttemptFailed(
                spec.name, info, retryable, now, jitter, message.attempt
            )
        else:
            event = StepAttemptFailed(
                spec.name, info, retryable, now, jitter, message.attempt
            )
        return ReplyEvent(event, entry("failed", error=info))
    if message.compensation:
        return ReplyEvent(
            CompensationSucceeded(spec.name, now, message.attempt), entry("succeeded")
        )
    result: Any = message.payload
    remote = spec.action if isinstance(spec.action, Remote) else None
    if remote is not None and remote.reply is not None:
        try:
            result = remote.reply.model_validate(message.payload).model_dump(
                mode="json"
            )
        except ValidationError as exc:
            info = ErrorInfo("InvalidReply", first_error(exc, "payload"))
            failed = StepAttemptFailed(
                spec.name, info, False, now, jitter, message.attempt
            )
            return ReplyEvent(failed, entry("failed", error=info))
    succeeded = StepSucceeded(spec.name, result, now, message.attempt)
    return ReplyEvent(succeeded, entry("succeeded", result=result))


@dataclass(frozen=True, slots=True)
class Awaiting:
    """A remote action or compensation waiting for its reply."""

    step: str
    compensating: bool
    attempt: int
    deadline: float
    limit: float
    """Its reply timeout: it was issued at ``deadline - limit``."""

    @property
    def issued(self) -> float:
        return self.deadline - self.limit

    @property
    def kind(self) -> str:
        return "compensation" if self.compensating else "action"


def awaiting(saga: Saga[Any], state: SagaState) -> Iterator[Awaiting]:
    """The steps of ``state`` whose remote command waits for its reply."""
    for name, step in state.steps.items():
        if step.deadline is None:
            continue
        compensating = step.status is StepStatus.COMPENSATING
        if not compensating and step.status is not StepStatus.RUNNING:
            continue
        spec: Step = saga.step(name)
        limit = spec.compensation_reply_timeout if compensating else spec.reply_timeout
        attempt = step.compensation_attempts if compensating else step.attempts
        yield Awaiting(name, compensating, attempt, step.deadline, limit)


def timed_out_entries(
    saga: Saga[Any], before: SagaState, now: float
) -> list[HistoryEntry]:
    """History lines for the remote steps whose reply deadline passed."""
    return [
        HistoryEntry(
            saga_id=before.saga_id,
            step=waiting.step,
            kind=waiting.kind,
            attempt=waiting.attempt,
            outcome="timed_out",
            started_at=waiting.issued,
            finished_at=now,
            error=ErrorInfo("ReplyTimeout", f"no reply within {waiting.limit:g}s"),
        )
        for waiting in awaiting(saga, before)
        if waiting.deadline <= now
    ]
