"""``WorkflowApp``: steps that choose the next step, durable timers, events.

Each instance waits on one pending step call in the store. ``run`` claims
due instances with a lease and runs their step; what the step returns (the
next call, with an optional delay, or any other JSON value: the instance's
result) is committed with its new state in one transaction. A delay is a
durable timer: it survives restarts and moves between workers. ``call``
delivers an external event to an instance that is pending on that step,
replacing the pending input and making it due now.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sagakit.definition.versions import check_version
from sagakit.errors import (
    ConcurrencyError,
    DefinitionError,
    SagaAlreadyExists,
    StateError,
    StepFailed,
)
from sagakit.ports.clock import Clock, SystemClock
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowStatus,
    WorkflowStore,
)
from sagakit.workflow.commit import GroupSaves
from sagakit.workflow.delivery import deliver
from sagakit.workflow.loop import Alarm, run_loop
from sagakit.workflow.runner import run_claimed
from sagakit.workflow.step import (
    CallbackHandler,
    WorkflowCall,
    WorkflowStep,
    start_digest,
    to_json,
)
from sagakit.workflow.versions import (
    claim_due,
    fingerprint,
    next_due,
    previous_versions,
)
from sagakit.workflow.waiting import report_unregistered

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
LogHandler = Callable[[logging.LogRecord], object]


class WorkflowApp:
    """A named set of steps and the loop that runs their instances.

    ``max_attempts``: starts of one step call before the instance fails
    (retries back off exponentially from ``retry_delay`` up to
    ``max_retry_delay`` seconds, as durable delayed calls); a step that
    raises :class:`~sagakit.errors.FatalError` fails it at once.
    ``max_transitions``: steps an instance may complete before it fails.
    ``lease``: seconds before another worker may re-run a step whose worker
    stopped renewing (at-least-once). ``log_handler`` receives every record
    the steps log and the app's own ``step_*`` records.

    ``chain`` (default True): a step that calls one of this app's steps due
    now commits that call already claimed, and the same worker runs it next:
    one commit a step instead of a save and a claim. With ``chain=False``
    every call is committed pending, for any worker to claim.

    ``version`` (default 1) numbers this app's set of steps: each instance
    records it, with the app's structural :attr:`fingerprint`, when it
    starts, and only an app of that version and shape runs it. ``previous``
    are older versions of the same app (``WorkflowApp`` objects of the same
    name, with their steps) that this one keeps running until their
    instances finish: :meth:`run` claims the instances of every version,
    each run by its own version; :meth:`start` starts new ones on this one.
    See :mod:`sagakit.workflow.versions`.
    """

    def __init__(
        self,
        name: str,
        store: WorkflowStore,
        *,
        clock: Clock | None = None,
        max_attempts: int = 3,
        retry_delay: float = 1.0,
        max_retry_delay: float = 300.0,
        max_transitions: int = 10_000,
        lease: float = 30.0,
        batch: int = 100,
        max_active: int = 100,
        worker_id: str | None = None,
        log_handler: LogHandler | None = None,
        version: int = 1,
        previous: Iterable[WorkflowApp] = (),
        chain: bool = True,
    ) -> None:
        if not name:
            raise DefinitionError("a workflow app needs a name")
        if max_attempts < 1 or max_transitions < 1 or batch < 1 or max_active < 1:
            raise DefinitionError(
                f"workflow {name}: max_attempts, max_transitions, batch and "
                "max_active must be >= 1"
            )
        self.name = name
        self.version = check_version(f"workflow {name}", version)
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.max_transitions = max_transitions
        self.lease = lease
        self.chain = chain
        self.batch = batch
        self.max_active = max_active
        self.worker_id = worker_id or f"wf-{uuid.uuid4().hex[:12]}"
        self.reported_at: float | None = None
        """When instances pending on unregistered steps were last looked for."""
        self.steps: dict[str, WorkflowStep] = {}
        self.previous: dict[int, WorkflowApp] = previous_versions(self, previous)
        """The older versions this app also runs, by version."""
        self.claims = 0  # claims made: which version asks first (claim_due)
        self.alarms: set[Alarm] = set()
        """The alarms of this app's running loops (:meth:`run`)."""
        self.saves = GroupSaves(store)
        """Where its steps' results are saved: together when they are ready
        together (:mod:`sagakit.workflow.commit`)."""
        self._fingerprint: str | None = None
        # One logger per app object (not in logging's registry), so handlers
        # added to it never leak to another app of the same name.
        self.logger = logging.Logger(f"sagakit.workflow.{name}")
        self.logger.parent = logging.getLogger("sagakit.workflow")
        if log_handler is not None:
            self.add_log_handler(log_handler)

    # -- definition --------------------------------------------------------

    def step(self, fn: F) -> WorkflowStep:
        """Register ``fn`` as a step; calling the result returns a WorkflowCall."""
        registered = WorkflowStep(self, fn)
        if registered.name in self.steps:
            raise DefinitionError(
                f"workflow {self.name}: step {registered.name} is defined twice"
            )
        self.steps[registered.name] = registered
        self._fingerprint = None
        return registered

    @property
    def fingerprint(self) -> str:
        """The structural fingerprint of the steps registered so far."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.steps.values())
        return self._fingerprint

    @property
    def versions(self) -> dict[int, WorkflowApp]:
        """Every version this app runs, by version: itself and its previous."""
        return {**self.previous, self.version: self}

    def add_log_handler(self, handler: LogHandler) -> None:
        """Also hand every record of this app's steps to ``handler``."""
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(CallbackHandler(handler))

    def _step(self, step: WorkflowStep | str, *, where: str) -> WorkflowStep:
        name = step if isinstance(step, str) else step.name
        found = self.steps.get(name)
        if found is None or (isinstance(step, WorkflowStep) and step is not found):
            known = ", ".join(sorted(self.steps)) or "none"
            raise DefinitionError(
                f"workflow {self.name}: {where}: step {name!r} is not registered "
                f"on this app (steps: {known})"
            )
        return found

    def check_call(self, call: WorkflowCall, *, where: str) -> None:
        """``DefinitionError`` unless ``call`` is a call of one of our steps."""
        self._step(call.step, where=where)

    # -- instances ---------------------------------------------------------

    async def start(
        self,
        instance_id: str | None,
        step: WorkflowStep | str,
        input: Any = None,
        *,
        delay: float = 0.0,
        state: dict[str, Any] | None = None,
    ) -> str:
        """Commit a new instance whose first call is ``step(input)``, due
        after ``delay``, and return its id.

        Starting an existing id again with the same call (step, input and
        ``state``; the delay aside) returns it unchanged, whatever it has done
        since: a retried request starts nothing twice. With another call it
        raises :class:`~sagakit.errors.SagaAlreadyExists`, carrying the
        instance's id and status, on every store and however concurrent
        starts race. An instance written before start digests were kept
        (before migration 0009) is returned."""
        first = self._step(step, where="start")
        instance_id = instance_id or uuid.uuid4().hex
        now = self.clock.now()
        payload = to_json(input, about=f"input of step {first.name}")
        initial = to_json(state or {}, about="initial state")
        digest = start_digest(first.name, payload, initial)
        record = WorkflowRecord(
            app=self.name,
            instance_id=instance_id,
            status=WorkflowStatus.PENDING,
            step=first.name,
            input=payload,
            due_at=now + delay,
            state=initial,
            version=1,
            attempts=0,
            transitions=0,
            error=None,
            created_at=now,
            updated_at=now,
            start_digest=digest,
            definition_version=self.version,
            fingerprint=self.fingerprint,
        )
        line = WorkflowHistoryEntry(
            app=self.name,
            instance_id=instance_id,
            step=first.name,
            attempt=0,
            outcome="started",
            recorded_at=now,
            detail={"delay": delay},
        )
        stored, created = await self.store.create(record, [line])
        if not created and stored.start_digest not in (None, digest):
            status = stored.status.value
            raise SagaAlreadyExists(
                f"workflow {self.name}/{instance_id} exists already (status "
                f"{status}), started with another call; start it with the same "
                "step, input and state, or use another id",
                saga_id=instance_id,
                status=status,
                app=self.name,
            )
        if created:
            self._due(record.due_at)
            self.logger.info(
                "workflow started",
                extra={
                    "action": "workflow_started",
                    "app": self.name,
                    "instance_id": instance_id,
                    "step": first.name,
                },
            )
        return instance_id

    async def call(
        self,
        instance_id: str,
        step_name: str,
        payload: Any = None,
    ) -> None:
        """Deliver an external event: the instance must be pending on
        ``step_name``; its input becomes ``payload`` and it is due now.

        The step is looked up in the version the instance started on; an
        instance of a version this process does not run takes the event all
        the same (only a process that has the version runs it)."""
        record = await self.store.get(self.name, instance_id)
        started_on = self.versions.get(record.definition_version)
        if started_on is not None:
            started_on._step(step_name, where=f"call on {instance_id}")
        where = f"workflow {self.name}/{instance_id}"
        if record.status.terminal:
            raise StateError(f"{where} has finished ({record.status.value})")
        if record.status is WorkflowStatus.RUNNING:
            raise ConcurrencyError(
                f"{where} is running step {record.step} (worker {record.owner}); "
                f"{step_name!r} can only be delivered while it is pending"
            )
        if record.step != step_name:
            raise StateError(
                f"{where} is pending on step {record.step!r}, not {step_name!r}"
            )
        now = self.clock.now()
        value = to_json(payload, about=f"payload of {step_name}")
        await deliver(
            self.store,
            record,
            step=step_name,
            value=value,
            due_at=now,
            attempt=record.attempts,
            detail={"input": value},
            now=now,
        )
        self._due(now)

    async def get(self, instance_id: str) -> WorkflowRecord:
        """The instance as stored (``SagaNotFound`` if there is none)."""
        return await self.store.get(self.name, instance_id)

    async def result(self, instance_id: str) -> Any:
        """The value a succeeded instance ended with: what its last step
        returned (None if it returned None). ``StepFailed`` (its message is
        the recorded error) if the instance failed; ``StateError`` if it has
        not finished."""
        record = await self.get(instance_id)
        where = f"workflow {self.name}/{instance_id}"
        if record.status is WorkflowStatus.SUCCEEDED:
            return record.result
        if record.status is WorkflowStatus.FAILED:
            raise StepFailed(
                f"{where}: {record.error}",
                saga_id=instance_id,
                step=record.step,
                error=None,
                status=record.status.value,
            )
        raise StateError(f"{where} has not finished ({record.status.value})")

    async def history(self, instance_id: str) -> list[WorkflowHistoryEntry]:
        return await self.store.history(self.name, instance_id)

    # -- the loop ----------------------------------------------------------

    async def _claim(self, limit: int) -> list[tuple[WorkflowApp, WorkflowRecord]]:
        return await claim_due(self, limit)

    async def run_once(self) -> int:
        """Claim what is due and run it (and the steps each run calls next
        due now: see :func:`~sagakit.workflow.runner.run_claimed`); returns
        the number of steps run.
        When nothing was due, report the instances this app cannot run (their
        pending step or their version is not registered here): see
        :func:`~sagakit.workflow.waiting.report_unregistered`."""
        claimed = await self._claim(self.batch)
        ran = await asyncio.gather(*(run_claimed(app, r) for app, r in claimed))
        if not claimed:
            await report_unregistered(self)
        return sum(r.steps for r in ran)

    async def run_until_idle(self) -> int:
        """Run due steps until nothing is due now; returns how many ran."""
        total = 0
        while ran := await self.run_once():
            total += ran
        return total

    async def run(
        self, stop: asyncio.Event | None = None, *, poll_interval: float = 0.2
    ) -> None:
        """Claim and run due steps until ``stop`` is set (then finish the
        steps in flight). Cancelling stops at once: leases then expire.

        It sleeps until the next instance is due, ``poll_interval`` seconds
        at most: instances that other processes start or wake are found
        within it, while this app's own starts and events wake it at once.
        See :mod:`sagakit.workflow.loop`."""
        await run_loop(self, stop or asyncio.Event(), poll_interval)

    def _due(self, when: float | None) -> None:
        """Tell this app's running loops that an instance is due at ``when``."""
        for alarm in self.alarms:
            alarm.due(when)

    async def advance(self, seconds: float) -> int:
        """Move a fake clock ``seconds`` ahead, running each step when it
        becomes due (in due order); returns how many steps ran."""
        move = getattr(self.clock, "advance", None)
        if not callable(move):
            raise StateError(
                f"workflow {self.name}: advance() needs a clock that can be moved "
                "(sagakit.testing.FakeClock)"
            )
        target = self.clock.now() + seconds
        total = 0
        while True:
            ran = await self.run_until_idle()
            total += ran
            due = await next_due(self)
            now = self.clock.now()
            if due is None or due > target or (due <= now and not ran):
                break
            if due > now:
                move(due - now)
        if target > self.clock.now():
            move(target - self.clock.now())
        return total + await self.run_until_idle()

    def __repr__(self) -> str:
        return f"WorkflowApp({self.name!r}, {self.store!r})"
