"""Sending again the command of a remote step whose reply is late.

A command, or its reply, can be lost where no retry of the transport's or
the relay's reaches it (a broker that drops a message, a participant that
acknowledged a command it never answered). The step then waits for its
whole reply timeout and fails, though the participant may well have done
the work. With ``resend_after`` (an option of the orchestrator; off by
default), an orchestrator that serves publishes again, ``resend_after``
seconds after a remote step's command was issued and every ``resend_after``
seconds after that, the command of each step it drives that still waits for
its reply. It goes with the same message id, so the participant's inbox
deduplicates it: a command it handled gets its stored reply again (the
handler does not run twice), one it never got is handled. It names this
process's reply key, so the reply comes here. The reply timeout still
decides when the step has failed.

What was sent again is kept in memory (:attr:`Instance.resent`); a process
that takes an instance over starts counting afresh. Sending goes straight to
the transport, not through the outbox: it is only a nudge, and the command's
first publish was durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sagakit.definition.saga import Saga
from sagakit.engine.commands import Compensate, RunStep
from sagakit.engine.state import SagaState
from sagakit.ports.transport import Transport
from sagakit.runtime.remote import awaiting, command_message, remote_of

if TYPE_CHECKING:
    from sagakit.runtime.driver import Driver
    from sagakit.runtime.instance import Instance

logger = logging.getLogger("sagakit.runtime.orchestrator")

ResendKey = tuple[str, str, int]
"""(step, ``"action"`` or ``"compensation"``, attempt): one command."""


def late_commands(
    saga: Saga[Any],
    state: SagaState,
    now: float,
    every: float,
    sent: Mapping[ResendKey, int],
) -> list[tuple[ResendKey, int, RunStep | Compensate, float]]:
    """The awaited remote commands of ``state`` to send again at ``now``:
    each with its key, how many times it will have been sent again, and
    when it was first issued. ``sent`` says how many times each was."""
    due = []
    for waiting in awaiting(saga, state):
        times = int((now - waiting.issued) // every)
        key = (waiting.step, waiting.kind, waiting.attempt)
        if times < 1 or times <= sent.get(key, 0):
            continue
        command: RunStep | Compensate
        if waiting.compensating:
            command = Compensate(waiting.step, waiting.attempt)
        else:
            command = RunStep(waiting.step, waiting.attempt)
        remote = remote_of(saga, command)
        if remote is not None and remote.awaited:
            due.append((key, times, command, waiting.issued))
    return due


class LateReplies:
    """Sends again the commands of the instances ``driver`` drives whose
    reply is late (see the module): :meth:`check` starts a round unless the
    last one still runs (a publish waits while the broker is away)."""

    def __init__(self, driver: Driver, transport: Transport, every: float) -> None:
        self.driver = driver
        self.transport = transport
        self.every = every
        self.resent = 0
        """Commands sent again so far (tests, metrics)."""
        self._round: asyncio.Task[None] | None = None

    def check(self) -> None:
        if self._round is not None and not self._round.done():
            return
        now = self.driver.clock.now()
        work = [
            (inst, *due)
            for inst in list(self.driver.active.values())
            for due in late_commands(
                inst.saga, inst.state, now, self.every, inst.resent
            )
        ]
        if work:
            self._round = asyncio.create_task(self._send(work))

    async def _send(
        self, work: list[tuple[Instance, ResendKey, int, RunStep | Compensate, float]]
    ) -> None:
        driver = self.driver
        for inst, key, times, command, issued in work:
            remote = remote_of(inst.saga, command)
            if remote is None:
                continue
            extra = {"saga_id": inst.state.saga_id, "step": command.step}
            try:
                message = command_message(
                    inst.saga,
                    inst.state,
                    inst.context,
                    command,
                    remote,
                    reply_to=driver.reply_queue,
                    now=issued,  # the history keeps when it was first issued
                    observer=driver.observer,
                    trace=inst.trace,
                    reply_key=driver.reply_key,
                )
                await self.transport.publish_raw(message.destination, message.body)
            except Exception as exc:  # the next round tries again
                logger.warning(
                    "sending a late command again failed",
                    extra={**extra, "action": "resend_failed", "error": str(exc)},
                )
                continue
            inst.resent[key] = times
            self.resent += 1
            logger.info(
                "reply late; command sent again",
                extra={**extra, "action": "command_resent", "attempt": key[2]},
            )

    async def stop(self) -> None:
        if self._round is not None:
            self._round.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._round
            self._round = None
