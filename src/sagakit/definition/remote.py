"""Remote actions: a step carried out by another service over a message broker.

``Step("create_ticket", Remote("kitchen.create_ticket", payload=build))`` sends
a ``kitchen.create_ticket`` command to the ``kitchen`` queue when the step runs;
the step succeeds or fails when the participant's reply arrives, and fails
with ``ReplyTimeout`` if no reply comes within the step's ``timeout``.

Two commands are sent without waiting for a reply (fire and forget):

* a compensation ``Remote(..., awaited=False)``: it counts as done once its
  command is committed to the outbox, and the rollback goes on at once;
* a step action's ``on_timeout=Remote(...)``: the command sent, when the
  action's reply deadline passes, before the step counts as failed (so a
  participant that finished late can undo its work).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from pydantic import BaseModel

from sagakit.errors import DefinitionError

DEFAULT_REPLY_TIMEOUT = 60.0
"""Seconds a remote step waits for its reply when the step sets no timeout."""

_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)+$")
_QUEUE = re.compile(r"^[A-Za-z0-9_.\-:]{1,200}$")


@dataclass(frozen=True, slots=True)
class Remote:
    """A command sent to another service instead of a local function.

    ``command`` is the message type, ``service.action``; it goes to ``queue``
    (by default the ``service`` part). ``payload`` builds the command body from
    the saga context (and, for a compensation, the step's recorded result):
    a pydantic model or a dict; declaring a parameter named ``results`` gives
    it the results of earlier steps. ``reply`` validates a successful reply's
    payload, which becomes the step result (it is the step's output model).

    ``awaited=False`` (compensations only) sends the command without a
    ``reply_to`` and waits for nothing: the compensation counts as
    succeeded in the commit that writes the command to the outbox, so a
    participant that never answers cannot hold the rollback up; a reply
    that comes anyway is ignored. It has no reply deadline, so no
    ``compensation_timeout``; the outbox delivers it at least once (the
    participant's inbox drops copies).

    ``on_timeout`` (a step action only) is the command sent when the reply
    deadline (the step's ``timeout``) passes, in the commit that records the
    timeout and before the step counts as failed (then it is retried or
    rolled back as usual): typically ``Remote("kitchen.cancel_ticket")``, so
    that a participant that finishes late can undo its work. It is fire and
    forget, sent once per timed-out attempt, and names the step and the
    attempt it cancels; its ``payload`` builder takes ``(ctx)`` (and
    ``results``, like any payload builder).
    """

    command: str
    payload: Callable[..., Any] | None = None
    queue: str | None = None
    reply: type[BaseModel] | None = None
    _: KW_ONLY
    awaited: bool = True
    on_timeout: Remote | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.command, str) or not _TYPE.match(self.command):
            raise DefinitionError(
                f"Remote command {self.command!r} is invalid: use 'service.action' "
                "(letters, digits, '_', '-', separated by dots)"
            )
        if self.queue is not None and (
            not isinstance(self.queue, str) or not _QUEUE.match(self.queue)
        ):
            raise DefinitionError(f"Remote queue {self.queue!r} is invalid")
        if self.payload is not None and not callable(self.payload):
            raise DefinitionError(f"Remote {self.command!r}: payload must be callable")
        if self.reply is not None and not (
            isinstance(self.reply, type) and issubclass(self.reply, BaseModel)
        ):
            raise DefinitionError(
                f"Remote {self.command!r}: reply must be a pydantic model class"
            )
        self._check_unawaited()

    def _check_unawaited(self) -> None:
        if not isinstance(self.awaited, bool):
            raise DefinitionError(
                f"Remote {self.command!r}: awaited must be True or False, "
                f"got {self.awaited!r}"
            )
        cancel = self.on_timeout
        if cancel is not None:
            if not isinstance(cancel, Remote):
                raise DefinitionError(
                    f"Remote {self.command!r}: on_timeout must be a Remote "
                    f"command, got {cancel!r}"
                )
            if cancel.reply is not None or cancel.on_timeout is not None:
                raise DefinitionError(
                    f"Remote {self.command!r}: its on_timeout command "
                    f"{cancel.command!r} is fire and forget: it takes no reply "
                    "model and no on_timeout"
                )
        if self.awaited:
            return
        if self.reply is not None:
            raise DefinitionError(
                f"Remote {self.command!r}: awaited=False reads no reply, so it "
                "takes no reply model"
            )
        if cancel is not None:
            raise DefinitionError(
                f"Remote {self.command!r}: awaited=False has no reply deadline, "
                "so no on_timeout"
            )

    @property
    def destination(self) -> str:
        """The queue the command is published to."""
        return self.queue or self.command.split(".", 1)[0]

    @property
    def service(self) -> str:
        return self.command.split(".", 1)[0]


def waits_for_reply(target: object) -> bool:
    """``target`` (a step's action or compensation) is a remote command whose
    reply the saga waits for (with a deadline)."""
    return isinstance(target, Remote) and target.awaited


def check_step_remotes(
    step: str, action: object, compensate: object, compensation_timeout: object
) -> None:
    """``DefinitionError`` for a step that uses ``awaited`` or ``on_timeout``
    where they mean nothing."""
    if isinstance(action, Remote) and not action.awaited:
        raise DefinitionError(
            f"step {step!r}: awaited=False is for compensations only: a step "
            f"action's reply ({action.command!r}) is its result and what the "
            "saga waits for before it goes on"
        )
    if not isinstance(compensate, Remote):
        return
    if compensate.on_timeout is not None:
        raise DefinitionError(
            f"step {step!r}: on_timeout belongs to the step action; the "
            f"compensation {compensate.command!r} cannot have one"
        )
    if not compensate.awaited and compensation_timeout is not None:
        raise DefinitionError(
            f"step {step!r}: the compensation {compensate.command!r} is not "
            "awaited (awaited=False), so compensation_timeout means nothing"
        )
