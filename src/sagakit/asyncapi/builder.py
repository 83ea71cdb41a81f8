"""The walk from an :class:`~sagakit.asyncapi.build.AsyncAPIApp` to the
neutral :class:`~sagakit.asyncapi.model.ApiModel`: the channels, messages
and operations of each saga, participant and event it names.

Where the models come from: a command's body is the participant handler's
payload model, else the return annotation of ``Remote.payload``; a reply's body
is ``Remote.reply``, else the handler's return annotation; an event's body is
its subscribers' handler model, else the one its publisher declares.

Events published without an address (an ``EventBus``'s ``publishes``) are
fanned out at run time, by the routes in the event store, to the queue of
every subscribed service. The document shows that as one ``send`` operation
per publisher on the channel of each subscriber it describes. An event that
nothing in the document subscribes to gets no operation, because an AsyncAPI
operation needs a channel and there is no queue to name. It is still
described as a message, and its ``x-sagakit-usages`` name its publishers.

Separate from :mod:`sagakit.asyncapi.build`, which declares a document and
finds what it covers in a module; this module only reads what it is given.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from sagakit.asyncapi.model import (
    Action,
    ActorKind,
    ApiModel,
    Channel,
    ChannelKind,
    EventSpec,
    Message,
    MessageKind,
    Operation,
    Reply,
    Usage,
)
from sagakit.asyncapi.server import parse_server
from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga
from sagakit.participant.service import Participant

if TYPE_CHECKING:  # the app's model() runs this builder
    from sagakit.asyncapi.build import AsyncAPIApp

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def safe_id(text: str) -> str:
    return _UNSAFE.sub("_", text) or "_"


def _summary(obj: object) -> str | None:
    doc = getattr(obj, "__doc__", None)
    if not doc or (obj.__class__ is type and doc == BaseModel.__doc__):
        return None
    first = doc.strip().split("\n\n")[0]
    return " ".join(first.split()) or None


def _return_model(fn: Callable[..., Any] | None) -> type[BaseModel] | None:
    if fn is None:
        return None
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:  # unresolvable annotations: an untyped body
        return None
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return hint
    return None


def _send_summary(saga: str, step: str, role: str, remote: Remote) -> str:
    """What a saga's send operation does, and whether it waits for a reply."""
    if role == "on_timeout":
        return (
            f"Saga {saga} sends {remote.command} when step {step}'s reply does "
            "not come in time, to cancel what it asked for (fire and forget: "
            "no reply_to, no reply awaited)."
        )
    what = "undo" if role == "compensation" else "run"
    text = f"Saga {saga} sends {remote.command} to {what} step {step}."
    if not remote.awaited:
        text += " Fire and forget: no reply_to, no reply awaited."
    return text


class Builder:
    """Fills one :class:`ApiModel` from the sources of one app."""

    def __init__(self, app: AsyncAPIApp) -> None:
        self.app = app
        self.model = ApiModel(
            title=app.title,
            version=app.version,
            description=app.description,
            broker_prefix=app.broker_prefix,
        )

    def build(self) -> ApiModel:
        model = self.model
        model.servers = [parse_server(n, u) for n, u in self.app.servers.items()]
        for saga in self.app.sagas:
            self._saga(saga)
        for service in self.app.participants:
            self._participant(service)
        for spec in self.app.events:
            if not _routed(spec):
                self._event(spec)
        for spec in self.app.events:  # once every subscriber's channel is known
            if _routed(spec):
                self._routed_event(spec)
        model.description = _overview(self.app, self.app.description)
        return model

    # channels and messages

    def _channel(self, kind: ChannelKind, address: str | None) -> Channel:
        dynamic = "reply_to" if kind == "replies" else f"{kind}.dynamic"
        key = safe_id(address) if address is not None else dynamic
        channel = self.model.channels.get(key)
        if channel is not None and channel.kind != kind:
            key = f"{key}.{kind}"
            channel = self.model.channels.get(key)
        if channel is None:
            channel = Channel(key, kind, address, description=_channel_text(kind))
            self.model.channels[key] = channel
        return channel

    def _message(
        self, kind: MessageKind, type_: str, body: type[BaseModel] | None
    ) -> Message:
        suffix = {"command": "", "reply": ".reply", "event": ""}[kind]
        key = safe_id(type_ + suffix)
        message = self.model.messages.get(key)
        if message is not None and message.kind != kind:
            key = f"{key}.{kind}"
            message = self.model.messages.get(key)
        if message is None:
            message = Message(key, kind, type_)
            self.model.messages[key] = message
        if body is not None and message.body is None:
            message.body = body
            message.summary = _summary(body)
        return message

    def _operation(self, op: Operation) -> Operation:
        existing = self.model.operations.get(op.id)
        if existing is None:
            self.model.operations[op.id] = op
            return op
        for m in op.messages:
            if m not in existing.messages:
                existing.messages.append(m)
        return existing

    @property
    def _reply_channel(self) -> Channel:
        if self.app.sagas:
            return self._channel("replies", self.app.reply_queue)
        return self._channel("replies", None)

    # sources

    def _saga(self, saga: Saga[Any]) -> None:
        if not any(s.is_remote or s.compensation_is_remote for s in saga):
            return  # local steps only: nothing crosses a broker
        replies = self._reply_channel
        received: list[str] = []
        for step in saga:
            cancel = step.action.on_timeout if isinstance(step.action, Remote) else None
            for role, remote in (
                ("action", step.action),
                ("compensation", step.compensate),
                ("on_timeout", cancel),
            ):
                if not isinstance(remote, Remote):
                    continue
                command = self._message(
                    "command", remote.command, _return_model(remote.payload)
                )
                command.usages.append(Usage(saga.name, role, step.name))
                channel = self._channel("commands", remote.destination)
                channel.carry(command.id)
                answer: Reply | None = None
                if role != "on_timeout" and remote.awaited:
                    reply = self._message("reply", remote.command, remote.reply)
                    reply.usages.append(Usage(saga.name, role, step.name))
                    replies.carry(reply.id)
                    received.append(reply.id)
                    answer = Reply(replies.id, (reply.id,))
                self._operation(
                    Operation(
                        id=safe_id(f"{saga.name}.send.{remote.command}"),
                        action="send",
                        channel=channel.id,
                        actor=saga.name,
                        actor_kind="saga",
                        messages=[command.id],
                        summary=_send_summary(saga.name, step.name, role, remote),
                        reply=answer,
                    )
                )
        if received:
            self._operation(
                Operation(
                    id=safe_id(f"{saga.name}.receive.replies"),
                    action="receive",
                    channel=replies.id,
                    actor=saga.name,
                    actor_kind="saga",
                    messages=list(dict.fromkeys(received)),
                    summary=f"Saga {saga.name} receives the replies to its commands.",
                )
            )

    def _participant(self, service: Participant) -> None:
        if not service.commands:
            return
        channel = self._channel("commands", service.queue)
        replies = self._reply_channel
        commands: list[str] = []
        answers: list[str] = []
        for command_type in service.commands:
            fn = service.handler_function(command_type)
            command = self._message("command", command_type, None)
            model = service.payload_model(command_type)
            if model is not None:  # the handler validates: its model wins
                command.body, command.summary = model, _summary(model)
            reply = self._message("reply", command_type, _return_model(fn))
            for m in (command, reply):
                m.usages.append(Usage(service.service, "handler"))
            channel.carry(command.id)
            replies.carry(reply.id)
            commands.append(command.id)
            answers.append(reply.id)
        dynamic = replies.address is None
        self._operation(
            Operation(
                id=safe_id(f"{service.service}.receive.commands"),
                action="receive",
                channel=channel.id,
                actor=service.service,
                actor_kind="participant",
                messages=commands,
                summary=f"Service {service.service} handles its commands.",
                reply=Reply(replies.id, tuple(answers), dynamic=True),
            )
        )
        self._operation(
            Operation(
                id=safe_id(f"{service.service}.send.replies"),
                action="send",
                channel=replies.id,
                actor=service.service,
                actor_kind="participant",
                messages=answers,
                summary=f"Service {service.service} replies to the queue each "
                "command's reply_to names"
                + ("." if dynamic else f" ({replies.address})."),
            )
        )

    def _event(self, spec: EventSpec) -> None:
        message = self._message("event", spec.type, spec.body)
        if spec.summary and not message.summary:
            message.summary = spec.summary
        if spec.address is None:
            return  # known by name only: a message, no channel
        channel = self._channel("events", spec.address)
        channel.carry(message.id)
        sides: tuple[tuple[Action, ActorKind, str, tuple[str, ...]], ...] = (
            ("send", "publisher", "publishes", spec.publishers),
            ("receive", "subscriber", "reacts to", spec.subscribers),
        )
        for action, kind, verb, actors in sides:
            for actor in actors:
                message.usages.append(Usage(actor, kind))
                self._operation(
                    Operation(
                        id=safe_id(f"{actor}.{action}.{spec.type}"),
                        action=action,
                        channel=channel.id,
                        actor=actor,
                        actor_kind=kind,
                        messages=[message.id],
                        summary=f"{actor} {verb} {spec.type}.",
                    )
                )

    def _routed_event(self, spec: EventSpec) -> None:
        """Sends of an event to each subscriber's channel in this document."""
        message = self._message("event", spec.type, spec.body)
        if spec.summary and not message.summary:
            message.summary = spec.summary
        subscribers: dict[str, list[str]] = {}  # channel -> its subscribers
        for op in self.model.operations.values():
            if op.actor_kind == "subscriber" and message.id in op.messages:
                subscribers.setdefault(op.channel, []).append(op.actor)
        for actor in spec.publishers:
            message.usages.append(Usage(actor, "publisher"))
            for channel, actors in subscribers.items():
                self._operation(
                    Operation(
                        id=safe_id(f"{actor}.send.{spec.type}.to.{channel}"),
                        action="send",
                        channel=channel,
                        actor=actor,
                        actor_kind="publisher",
                        messages=[message.id],
                        summary=f"{actor} publishes {spec.type}; the bus sends a "
                        "copy to the queue of each subscribed service (by route, "
                        f"at run time), here {', '.join(actors)}.",
                    )
                )


def _routed(spec: EventSpec) -> bool:
    """Published with no address: routed to whoever subscribes."""
    return spec.address is None and bool(spec.publishers)


def _channel_text(kind: ChannelKind) -> str:
    return {
        "commands": "A participant's command queue: orchestrators send commands, "
        "the service handles them.",
        "replies": "Where replies to commands arrive: the queue each command's "
        "reply_to names.",
        "events": "A service's event queue: each event it subscribes to is "
        "published here.",
    }[kind]


def _overview(app: AsyncAPIApp, description: str | None) -> str:
    lines = []
    for saga in app.sagas:
        shape = " -> ".join(
            "(" + " | ".join(s.name for s in stage) + ")"
            if len(stage) > 1
            else stage[0].name + (" [pivot]" if stage[0].pivot else "")
            for stage in saga.stages
        )
        lines.append(f"- saga `{saga.name}`: {shape}")
    for service in app.participants:
        lines.append(
            f"- service `{service.service}` on queue `{service.queue}`: "
            + ", ".join(service.commands)
        )
    head = description or "Messages exchanged by sagakit sagas and services."
    return head + ("\n\n" + "\n".join(lines) if lines else "")
