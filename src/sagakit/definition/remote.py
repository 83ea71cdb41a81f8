"""Remote actions: a step carried out by another service over a message broker.

``Step("create_ticket", Remote("kitchen.create_ticket", payload=build))`` sends
a ``kitchen.create_ticket`` command to the ``kitchen`` queue when the step runs;
the step succeeds or fails when the participant's reply arrives, and fails
with ``ReplyTimeout`` if no reply comes within the step's ``timeout``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
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
    """

    command: str
    payload: Callable[..., Any] | None = None
    queue: str | None = None
    reply: type[BaseModel] | None = None

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

    @property
    def destination(self) -> str:
        """The queue the command is published to."""
        return self.queue or self.command.split(".", 1)[0]

    @property
    def service(self) -> str:
        return self.command.split(".", 1)[0]
