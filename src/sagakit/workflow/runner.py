"""Running one claimed instance: its step, then one commit of what follows.

The step's outcome (the next call, success with the value it returned, a
retry or the failure) and the state it set are saved in one transaction,
guarded by the version the claim returned: a worker whose lease was taken
over commits nothing. A :class:`~sagakit.errors.FatalError` (or a
``DefinitionError``: retrying cannot fix a definition) fails the instance at
once; any other exception is retried up to the app's ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from sagakit.errors import (
    ConcurrencyError,
    DefinitionError,
    FatalError,
    SagaNotFound,
    StoreError,
)
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowStatus,
)
from sagakit.workflow.step import StepLogger, WorkflowCall, WorkflowStep, to_json

if TYPE_CHECKING:
    from sagakit.workflow.app import WorkflowApp

logger = logging.getLogger(__name__)


CHAIN_STEPS = 100
"""Steps one claim runs at most (see :func:`run_claimed`); the call after
them is committed pending, to be claimed in turn with the other due
instances: a long chain of calls due now cannot hold a worker's slot."""


class Ran(NamedTuple):
    """What :func:`run_claimed` did: how many steps ran, and when the call
    it committed last is due (None: none is)."""

    steps: int
    due: float | None


def _always() -> bool:
    return True


def _never() -> bool:
    return False


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Outcome:
    """What a step run leads to: the record to save and its history line."""

    def __init__(self, record: WorkflowRecord, line: WorkflowHistoryEntry) -> None:
        self.record = record
        self.line = line


async def _keep_lease(app: WorkflowApp, record: WorkflowRecord) -> None:
    """Renew the lease now, then every third of it while the step runs."""
    while True:
        try:
            held = await app.store.renew(
                app.name,
                app.worker_id,
                record.instance_id,
                now=app.clock.now(),
                lease=app.lease,
            )
        except StoreError:
            logger.warning(
                "lease renewal failed",
                extra={
                    "action": "lease_renewal_failed",
                    "app": app.name,
                    "instance_id": record.instance_id,
                },
            )
            held = True
        if not held:
            return
        await asyncio.sleep(app.lease / 3)


class _LeaseKeeper:
    """Renews a running step's lease every third of it (:func:`_keep_lease`),
    from a timer: a step that ends within a third of its lease, as most do,
    costs no task."""

    def __init__(self, app: WorkflowApp, record: WorkflowRecord) -> None:
        self._renewer: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(
            app.lease / 3, self._start, app, record
        )

    def _start(self, app: WorkflowApp, record: WorkflowRecord) -> None:
        self._renewer = asyncio.create_task(_keep_lease(app, record))

    async def stop(self) -> None:
        self._timer.cancel()
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer


async def run_claimed(
    app: WorkflowApp, record: WorkflowRecord, go_on: Callable[[], bool] = _always
) -> Ran:
    """Run the pending step of ``record`` (claimed by ``app``) and commit;
    then the step it called, while that call is due now, is one of
    ``app``'s, and ``app.chain`` and ``go_on()`` (asked once each step has
    run) say yes, up to :data:`CHAIN_STEPS` steps: its commit keeps the
    claim (see :func:`_next`). Returns how many steps ran and when the call
    it last committed is due (None: the instance finished, waits for an
    event, or nothing was committed)."""
    saves = app.saves
    saves.running += 1
    ran = 0
    try:
        while True:
            step = app.steps.get(record.step or "")
            if step is None:  # claims filter on known steps; only a race gets here
                return Ran(ran, None)
            ran += 1
            chain = go_on if ran < CHAIN_STEPS else _never
            saved = await _run(app, record, step, chain=chain)
            if saved is None or saved.status is not WorkflowStatus.RUNNING:
                return Ran(ran, None if saved is None else saved.due_at)
            record = saved
    finally:
        saves.running -= 1


async def _run(
    app: WorkflowApp,
    record: WorkflowRecord,
    step: WorkflowStep,
    *,
    chain: Callable[[], bool],
) -> WorkflowRecord | None:
    """Run ``step`` of ``record`` and commit what follows: the record saved
    (None: nothing was)."""
    base = {
        "app": app.name,
        "instance_id": record.instance_id,
        "step": record.step,
        "attempt": record.attempts,
    }
    log = StepLogger(app.logger, base)
    if record.attempts > app.max_attempts:
        error = (
            f"step {step.name} was started {record.attempts - 1} times without "
            "finishing (its workers were lost)"
        )
        outcome = _failed(app, record, error)
    else:
        log.info("step started", extra={"action": "step_started"})
        box = [copy.deepcopy(record.state)]

        def set_state(new: dict[str, Any]) -> None:
            if not isinstance(new, dict):
                raise DefinitionError(
                    f"workflow {record.instance_id}: set_state takes a dict, "
                    f"got {type(new).__name__}"
                )
            box[0] = to_json(new, about=f"state of workflow {record.instance_id}")

        lease = _LeaseKeeper(app, record)
        try:
            result = await step.invoke(
                step.decode(record.input), copy.deepcopy(box[0]), set_state, log
            )
            outcome = _next(app, record, result, box[0], chain=chain)
        except (DefinitionError, FatalError) as exc:  # never retried
            outcome = _failed(app, record, describe(exc))
        except Exception as exc:
            outcome = _retry_or_fail(app, record, exc)
        finally:
            await lease.stop()
        extra = {"action": f"step_{outcome.line.outcome}", "error": outcome.line.error}
        if outcome.line.outcome == "succeeded":
            log.info(
                "step finished",
                extra={**extra, "action": "step_finished", "next": outcome.record.step},
            )
        else:
            log.warning(
                "step failed",
                extra={
                    **extra,
                    "action": "step_failed",
                    "retrying": outcome.line.outcome == "retrying",
                },
            )
    try:
        await app.saves.save(outcome.record, record.version, [outcome.line])
    except (ConcurrencyError, SagaNotFound):
        log.warning("lease lost; step result dropped", extra={"action": "lease_lost"})
        return None
    except StoreError:
        logger.exception(
            "saving a step result failed", extra={"action": "save_failed", **base}
        )
        return None
    if outcome.record.status.terminal:
        log.info(
            "workflow finished",
            extra={
                "action": "workflow_finished",
                "status": outcome.record.status.value,
            },
        )
    return outcome.record


def _line(
    app: WorkflowApp, record: WorkflowRecord, outcome: str, **kw: Any
) -> WorkflowHistoryEntry:
    return WorkflowHistoryEntry(
        app=app.name,
        instance_id=record.instance_id,
        step=record.step,
        attempt=record.attempts,
        outcome=outcome,
        recorded_at=app.clock.now(),
        **kw,
    )


def _next(
    app: WorkflowApp,
    record: WorkflowRecord,
    result: Any,
    state: dict[str, Any],
    *,
    chain: Callable[[], bool],
) -> _Outcome:
    """What ``result`` leads to. A call due now of one of ``app``'s steps,
    while ``app.chain`` and ``chain()`` say yes, is committed already
    claimed by ``app`` (running, its lease renewed, a first attempt), as a
    claim would leave it: the same worker runs it next without a claim's
    commit, and if it stops, the call is claimable once the lease runs
    out, as a step cut short is."""
    now = app.clock.now()
    done: dict[str, Any] = {
        "state": state,
        "version": record.version + 1,
        "transitions": record.transitions + 1,
        "attempts": 0,
        "error": None,
        "updated_at": now,
        "owner": None,
        "lease_until": None,
    }
    if not isinstance(result, WorkflowCall):
        finished = replace(
            record,
            **done,
            status=WorkflowStatus.SUCCEEDED,
            step=None,
            input=None,
            due_at=None,
            result=_result_of(record, result),
        )
        return _Outcome(
            finished, _line(app, record, "succeeded", detail={"next": None})
        )
    app.check_call(result, where=f"step {record.step}")
    if record.transitions + 1 >= app.max_transitions:
        raise DefinitionError(
            f"workflow {record.instance_id}: more than max_transitions="
            f"{app.max_transitions} steps (step {record.step} -> {result.name}); "
            "is it looping?"
        )
    payload = to_json(result.input, about=f"input of step {result.name}")
    if (
        result.delay == 0
        and app.chain
        and app.steps.get(result.name) is result.step
        and chain()
    ):  # as a claim by this worker would leave it
        done.update(attempts=1, owner=app.worker_id, lease_until=now + app.lease)
        status = WorkflowStatus.RUNNING
    else:
        status = WorkflowStatus.PENDING
    pending = replace(
        record,
        **done,
        status=status,
        step=result.name,
        input=payload,
        due_at=None if result.delay is None else now + result.delay,
    )
    detail = {"next": result.name, "delay": result.delay}
    return _Outcome(pending, _line(app, record, "succeeded", detail=detail))


def _result_of(record: WorkflowRecord, value: Any) -> Any:
    """What a step returned, as the JSON result to end the instance with."""
    where = f"workflow {record.instance_id}: step {record.step}"
    if isinstance(value, WorkflowStep):
        raise DefinitionError(
            f"{where} returned the step {value.name} itself; return a call of "
            f"it, {value.name}(input), to run it next"
        )
    kind = type(value).__name__
    return to_json(value, about=f"{where}: the {kind} it returned, not a step call,")


def _failed(app: WorkflowApp, record: WorkflowRecord, error: str) -> _Outcome:
    failed = replace(
        record,
        status=WorkflowStatus.FAILED,
        due_at=None,
        version=record.version + 1,
        error=f"step {record.step} failed: {error}",
        updated_at=app.clock.now(),
        owner=None,
        lease_until=None,
    )
    return _Outcome(failed, _line(app, record, "failed", error=error))


def _retry_or_fail(
    app: WorkflowApp, record: WorkflowRecord, exc: Exception
) -> _Outcome:
    error = describe(exc)
    if record.attempts >= app.max_attempts:
        return _failed(app, record, f"{error} (after {record.attempts} attempts)")
    # the exponent is capped: a float cannot hold 2 ** 1024 (max_attempts may
    # be huge: pg-saga's compat retries until the step succeeds)
    backoff = 2 ** min(record.attempts - 1, 64)
    delay = min(app.retry_delay * backoff, app.max_retry_delay)
    now = app.clock.now()
    retry = replace(
        record,
        status=WorkflowStatus.PENDING,
        due_at=now + delay,
        version=record.version + 1,
        error=error,
        updated_at=now,
        owner=None,
        lease_until=None,
    )
    return _Outcome(
        retry, _line(app, record, "retrying", error=error, detail={"delay": delay})
    )
