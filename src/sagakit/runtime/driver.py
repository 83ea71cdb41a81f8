"""The driver: runs the saga instances of one process, one task each.

For every event the loop is: ``decide`` -> commit the new state and the history
line -> run the commands. A transition is durable before any of its effects
start, so a crash at any point leaves a state a restarted worker can resume.
Replies, deadlines and operator requests reach an instance as deliveries on
its queue (:func:`~sagakit.runtime.delivery.enqueue`); its task applies them
like any outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from sagakit.definition.saga import Saga
from sagakit.engine.commands import (
    CancelSteps,
    Command,
    Compensate,
    Decision,
    FinishSaga,
    RunStep,
)
from sagakit.engine.decide import decide
from sagakit.engine.events import Event
from sagakit.errors import (
    ConcurrencyError,
    SagaNotFound,
    StateError,
    StoreError,
)
from sagakit.observability.observer import NOOP, Observer
from sagakit.ports.clock import Clock
from sagakit.ports.store import (
    HistoryEntry,
    InboxEntry,
    OutboxMessage,
    SagaRecord,
    SagaStore,
)
from sagakit.runtime import (
    delivery,
    locking,
    lockwatch,
    operator,
    owners,
    refresh,
    subsaga,
)
from sagakit.runtime.cancel import cancel_steps, cancelled, was_cancelled
from sagakit.runtime.ending import abandon, finish, hand_over, lease_lost, stopped
from sagakit.runtime.executor import StepOutcome, execute
from sagakit.runtime.group import saves_of
from sagakit.runtime.heartbeat import Heartbeat, renew
from sagakit.runtime.instance import (
    Delivery,
    Instance,
    Item,
    LeaseLost,
    Refresh,
    stored_trace,
    work_key,
)
from sagakit.runtime.relay import OutboxRelay
from sagakit.runtime.remote import remote_of
from sagakit.runtime.transition import commit_decision

logger = logging.getLogger("sagakit.runtime.orchestrator")


@dataclass(eq=False)
class Driver:
    """Drives the instances of one process against one store.

    It owns the instances driven here (``active``, by saga id) and their
    tasks; it applies events to them (decide -> commit -> effects) and
    commits at the next version under this worker's lease, if any, which a
    heartbeat renews every ``lease / 3`` s while anything is driven (the
    commit: :mod:`~sagakit.runtime.transition`; how an instance stops being
    driven here: :mod:`~sagakit.runtime.ending`).
    ``definition`` finds the saga a stored instance started on, or raises
    ``DefinitionUnavailable`` (the instance is then left to a process that
    has it, marked waiting).

    ``draining``: no step starts any more; an instance whose steps in flight
    have finished (and are committed) is handed over (``handed``) instead.

    A sub-saga step's child is watched by a task of its parent's instance
    (:mod:`~sagakit.runtime.subsaga`): woken through ``children`` when the
    child ends here, else looking at the store every ``child_poll`` seconds
    at most. ``locks`` wakes those that queue for locks (``lock_poll``).
    """

    store: SagaStore
    definition: Callable[[SagaRecord], Saga[Any]]
    _: KW_ONLY
    clock: Clock
    jitter: Callable[[], float]
    worker_id: str
    lease: float | None = None
    max_crashes: int | None = 3
    """Takeovers finding a local step in flight before its saga is parked
    (:mod:`sagakit.engine.poison`); None: never."""
    store_retry: float = 30.0
    reply_queue: str = "sagakit.replies"
    reply_key: str | None = None
    """Named in the commands sent from here (see ``runtime.intake``)."""
    relay: OutboxRelay | None = None
    observer: Observer = NOOP
    child_poll: float = 1.0
    lock_poll: float = 0.25
    group_commit: bool = True
    active: dict[str, Instance] = field(default_factory=dict, init=False)
    tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    draining: bool = field(default=False, init=False)
    handed: list[str] = field(default_factory=list, init=False)
    beat: Heartbeat | None = field(default=None, init=False)
    look: Heartbeat | None = field(default=None, init=False)
    """Looks at the paused instances parked here while there are any."""
    children: subsaga.ChildWatch = field(default_factory=subsaga.ChildWatch, init=False)
    saves: Any = field(default=None, init=False)
    """Where commits go: the store, or a :class:`GroupCommit` on it."""
    freed: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    """Set whenever an instance stops being driven here (a worker claims)."""
    store_failure: StoreError | None = field(default=None, init=False)
    """The last save refused for good (its instance stopped, resumable)."""
    locks: lockwatch.LockWatch = field(init=False)

    def __post_init__(self) -> None:
        owners.started(self)
        self.locks = lockwatch.LockWatch(self)
        self.saves = saves_of(self.store, self.group_commit, lambda: len(self.active))
        if self.lease is not None:
            self.beat = Heartbeat(self.renew_leases, self.lease / 3, self.busy)
            self.look = Heartbeat(
                lambda: refresh.look_at_paused(self),
                refresh.PAUSED_LOOK,
                lambda: self.paused() > 0,
            )

    def busy(self) -> bool:
        return bool(self.active)

    def ownership(self) -> dict[str, Any]:
        """The keywords a commit passes to the store to keep the lease."""
        if self.lease is None:
            return {}
        return {"owner": self.worker_id, "lease": self.lease}

    # -- taking instances ----------------------------------------------------

    def own(self, inst: Instance) -> None:
        """Count ``inst`` as driven here: its lease is renewed from now on."""
        self.active[inst.state.saga_id] = inst
        if self.beat is not None:
            self.beat.start()
        if inst.state.locks is not None:  # it may queue for locks
            self.locks.start()

    def drop(self, saga_id: str) -> None:
        """No longer driven here; the heartbeat stops with the last one."""
        self.active.pop(saga_id, None)
        self.freed.set()
        if self.beat is not None:
            self.beat.idle()

    def spawn(self, inst: Instance, commands: tuple[Command, ...]) -> None:
        """Drive ``inst`` (now ``active``) in a task of its own."""
        self.own(inst)
        task = asyncio.create_task(self.drive(inst, commands))
        inst.driver = task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def request(
        self,
        saga_id: str,
        action: operator.Action,
        *,
        reason: str | None = None,
        by: str = "operator",
        hand_over: bool = False,
        step: str | None = None,
    ) -> None:
        """Apply an operator's ``action`` (see :func:`operator.request`)."""
        await operator.handle(
            self, saga_id, action, reason=reason, by=by, hand_over=hand_over, step=step
        )

    # -- letting go ------------------------------------------------------------

    async def renew_leases(self) -> list[str]:
        """Extend the leases of the instances driven here; returns the ids
        lost (another worker claimed them: their next save fails)."""
        return await renew(self)

    async def drain(self, poll: float = 0.25) -> None:
        """Wait until every instance driven in the background has stopped,
        or only paused ones wait (parked) for an operator."""
        while self.tasks:
            if self.active and self.paused() == len(self.active):
                return
            await asyncio.wait(list(self.tasks), timeout=poll)

    def paused(self) -> int:
        """How many instances driven here are paused and parked."""
        return sum(i.parked and i.state.paused for i in self.active.values())

    async def settle(self, poll: float = 0.02) -> None:
        """Wait until every instance driven here has ended or only waits."""
        # parked flags change in many places; a short poll is simpler than events
        while any(not inst.parked for inst in self.active.values()):  # noqa: ASYNC110
            await asyncio.sleep(poll)

    async def stop(self, *, release: bool = True) -> list[str]:
        """Cancel every instance driven here (released, with a lease and
        ``release``); returns their ids."""
        ids = list(self.active)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*list(self.tasks), return_exceptions=True)
        for beat in (self.beat, self.look):
            if beat is not None:
                beat.stop()
        ids += self.handed
        self.handed = []
        if release and self.lease is not None and ids:
            await self.store.release(self.worker_id, ids)
        return ids

    # -- driving -------------------------------------------------------------

    async def drive(self, inst: Instance, commands: tuple[Command, ...]) -> None:
        """Run the instance's commands and apply their outcomes until it ends.

        Local steps run here; remote steps only wait: their replies and
        deadlines arrive on the instance's queue as deliveries.
        """
        saga_id = inst.state.saga_id
        try:
            if inst.trace is None and self.observer.traces:
                inst.trace = await stored_trace(self.store, saga_id)
            while True:
                commands = refresh.owed(inst, commands)
                if inst.saga.lock_steps and locking.asks(commands):
                    commands = await locking.ask_for(self, inst, commands)
                local = self._issue(inst, commands)
                if local is None:
                    return
                item = await self._start(inst, local)
                if type(item) is not StepOutcome:  # else a step's outcome
                    if isinstance(item, Delivery):
                        commands = await delivery.deliver(self, inst, item)
                        continue
                    if isinstance(item, Refresh):  # changed by another process
                        if not await refresh.reload(self, inst):
                            lease_lost(saga_id)
                        commands = ()
                        continue
                    if isinstance(item, LeaseLost):
                        lease_lost(saga_id)
                if item.exception is not None:
                    inst.exceptions[item.entry.step or ""] = item.exception
                # an operator's request that came while the step ran goes first:
                # a cancel must stop the saga before the next step starts
                if not inst.queue.empty():
                    await self._apply_operator_requests(inst)
                commands = await refresh.apply_owned(
                    self, inst, item.event, [item.entry]
                )
                inst.running.discard((item.entry.kind, item.entry.step or ""))
        except asyncio.CancelledError:
            abandon(self, inst, None)
            raise
        except (ConcurrencyError, StateError, SagaNotFound) as exc:
            if not inst.lost:
                logger.warning(
                    "saga taken over by another worker; stopped driving it here",
                    extra={
                        "action": "saga_abandoned",
                        "saga_id": saga_id,
                        "reason": str(exc),
                    },
                )
            abandon(self, inst, exc)
        except Exception as exc:
            if isinstance(exc, StoreError):  # past store_retry, or read-only
                self.store_failure = exc
            stopped(saga_id, exc)
            abandon(self, inst, exc)

    def _issue(
        self, inst: Instance, commands: tuple[Command, ...]
    ) -> list[RunStep | Compensate] | None:
        """Carry out ``commands`` but the local runs, which are returned
        (None once ``inst`` ended or was handed over); sub-saga steps are
        watched (:mod:`~sagakit.runtime.subsaga`)."""
        local: list[RunStep | Compensate] = []
        children: list[RunStep | Compensate] = []
        saga = inst.saga
        plain = not saga.sends and not saga.children  # every step runs here
        for command in commands:
            if isinstance(command, FinishSaga):
                finish(self, inst)
                return None
            if isinstance(command, CancelSteps):
                cancel_steps(inst, command, self.clock)
                subsaga.cancel_children(self, inst, command)
            elif not isinstance(command, (RunStep, Compensate)):
                continue  # a SendCancel is in the outbox already
            elif plain:
                local.append(command)
            elif subsaga.is_child_command(saga, command):
                children.append(command)
            elif remote_of(saga, command) is None:
                local.append(command)
        if self.draining and (local or children):
            if inst.in_flight == 0:
                hand_over(self, inst)
                return None
            return []  # the next owner runs them
        if inst.saga.children and not self.draining:
            # from the state, not the commands: also after a reload, or a
            # takeover whatever its way here (see runtime.subsaga)
            subsaga.watch_all(self, inst)
        return local

    async def _start(self, inst: Instance, local: list[RunStep | Compensate]) -> Item:
        """Start the ``local`` work; returns the instance's next item (a lone
        step runs in this task, its outcome that item)."""
        inst.running.update(map(work_key, local))
        if len(local) == 1 and inst.in_flight == 0 and inst.queue.empty():
            return await self.execute(inst, local[0])
        for command in local:
            inst.in_flight += 1
            task = asyncio.create_task(self._execute_into(inst, command))
            inst.tasks.add(task)
            task.add_done_callback(inst.tasks.discard)
            if isinstance(command, RunStep):
                inst.step_tasks[command.step] = task
        # parked while nothing runs here for it
        inst.parked = inst.in_flight == 0
        if inst.parked and inst.state.paused and self.look is not None:
            self.look.start()
        try:
            return await inst.queue.get()
        finally:
            inst.parked = False

    async def _apply_operator_requests(self, inst: Instance) -> None:
        waiting: list[Item] = []
        while not inst.queue.empty():
            item = inst.queue.get_nowait()
            if isinstance(item, Delivery) and item.strict:
                await delivery.deliver(self, inst, item)
            else:
                waiting.append(item)
        for item in waiting:
            inst.queue.put_nowait(item)

    # -- transitions ---------------------------------------------------------

    async def apply(
        self,
        inst: Instance,
        event: Event,
        entries: list[HistoryEntry],
        inbox: InboxEntry | None = None,
    ) -> tuple[Command, ...]:
        """Decide, then commit the transition before anything else happens.

        Remote commands the decision issues are written to the outbox in the
        same commit; a fire-and-forget compensation among them counts as
        succeeded in that commit (see :mod:`sagakit.runtime.unawaited`). A
        decision that changes nothing commits nothing.
        """
        decision = decide(inst.saga, inst.state, event)
        if (  # the cheap tests first: comparing states is most of this
            not decision.commands and inbox is None and decision.state == inst.state
        ):
            return ()
        return await self.transition(inst, decision, entries, inbox)

    async def transition(
        self,
        inst: Instance,
        decision: Decision,
        entries: list[HistoryEntry],
        inbox: InboxEntry | None = None,
    ) -> tuple[Command, ...]:
        """Commit ``decision`` and its locks; the commands to run here."""
        if inst.saga.lock_steps and locking.asks(decision.commands):
            return await locking.transition(self, inst, decision, entries, inbox)
        return await self.commit_decision(inst, decision, entries, inbox)

    async def commit_decision(
        self,
        inst: Instance,
        decision: Decision,
        entries: list[HistoryEntry],
        inbox: InboxEntry | None = None,
    ) -> tuple[Command, ...]:
        """:meth:`transition`, the locks asked for settled (see locking)."""
        return await commit_decision(self, inst, decision, entries, inbox)

    def hold(self, outbox: list[OutboxMessage], now: float) -> list[OutboxMessage]:
        """``outbox`` as it is to be committed (held by the running relay)."""
        if self.relay is None:
            return outbox
        return self.relay.holding(outbox, now)

    def send(self, outbox: list[OutboxMessage]) -> None:
        """After the commit: publish what the relay holds, wake it for the rest."""
        if outbox and self.relay is not None:
            self.relay.publish_now(outbox)

    # -- running steps -------------------------------------------------------

    async def _execute_into(
        self, inst: Instance, command: RunStep | Compensate
    ) -> None:
        started = self.clock.now()
        try:
            outcome = await self.execute(inst, command)
        except asyncio.CancelledError:
            if not isinstance(command, RunStep) or not was_cancelled(inst, command):
                raise
            outcome = cancelled(inst.state.saga_id, command, started, self.clock.now())
        finally:
            if inst.step_tasks.get(command.step) is asyncio.current_task():
                del inst.step_tasks[command.step]
        inst.in_flight -= 1
        inst.queue.put_nowait(outcome)

    async def execute(
        self, inst: Instance, command: RunStep | Compensate
    ) -> StepOutcome:
        """Run a local step or compensation of ``inst``."""
        return await execute(
            inst.saga,
            inst.state,
            inst.context,
            command,
            clock=self.clock,
            jitter=self.jitter,
            observer=self.observer,
            trace=inst.trace,
        )
