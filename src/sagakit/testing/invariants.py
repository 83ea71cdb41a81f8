"""The invariants every run must keep, checked against what the run observed.

* the saga reaches the terminal status the failure point calls for;
* compensations run exactly once for the completed steps that have one (and
  failed ``compensate_on_failure`` steps), each only after the compensations
  of every step downstream of it ended (a fire-and-forget one,
  ``awaited=False``, runs and ends when its command is committed: ``sent``
  once); when a compensation fails for good, the others are all attempted
  under the ``continue`` policy, and none starts afterwards under ``stop``;
* no forward step starts after the first permanent failure;
* no effect is applied twice: a committed step never runs again after a
  crash (the step in flight at the crash may run twice), and a participant
  runs its handler at most once per command message id;
* a saga that ended holds no semantic lock and queues for none, in its
  state and in the store.

Completion order comes from the effects log (when each local action returned)
and, within a stage that has remote steps, from the order the orchestrator
recorded the replies in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga
from sagakit.engine.state import SagaStatus, StepStatus
from sagakit.testing.run_record import Effect, RunRecord


@dataclass(frozen=True, slots=True)
class Violation:
    point: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.point}] {self.rule}: {self.detail}"


def _last(effects: list[Effect], step: str, kind: str, outcome: str) -> int | None:
    found = [
        e.seq for e in effects if (e.step, e.kind, e.outcome) == (step, kind, outcome)
    ]
    return found[-1] if found else None


def _interrupted(run: RunRecord, step: str) -> bool:
    """In flight while the committed saga was already rolling back: on recovery
    the step counts as failed with an unknown outcome."""
    state = run.committed_at_crash
    return (
        state is not None
        and state.status is SagaStatus.COMPENSATING
        and state.step(step).status is StepStatus.RUNNING
        and not any(
            e.step == step and e.kind == "action" and e.generation > 1
            for e in run.effects
        )
    )


def expected_compensations(saga: Saga[Any], run: RunRecord) -> list[str]:
    """Compensatable steps that completed, last completed first (the order
    a sequence is undone in; independent steps may be undone together)."""
    final = run.final
    completed_at = {n: i for i, n in enumerate(final.state.completed)} if final else {}
    stage_of = {s.name: i for i, g in enumerate(saga.stages) for s in g}
    remote_stage = {i for i, g in enumerate(saga.stages) if any(s.is_remote for s in g)}
    keys: list[tuple[tuple[int, int, int], str]] = []
    for spec in saga:
        if spec.compensate is None:
            continue
        ok = _last(run.effects, spec.name, "action", "ok")
        if ok is None and spec.compensate_on_failure:
            started = [
                e.seq for e in run.effects if (e.step, e.kind) == (spec.name, "action")
            ]
            ok = started[-1] if started else None
        if ok is None:
            continue
        interrupted = not spec.is_sub_saga and _interrupted(run, spec.name)
        if interrupted and not spec.compensate_on_failure:
            continue
        stage = stage_of[spec.name]
        pos = completed_at.get(spec.name, ok) if stage in remote_stage else ok
        keys.append(((int(interrupted), stage, pos), spec.name))
    return [name for _, name in sorted(keys, reverse=True)]


def observed_compensations(run: RunRecord) -> list[str]:
    """Steps whose compensation was applied (or, fire and forget, sent)."""
    seen: list[str] = []
    for e in run.effects:
        if (
            e.kind == "compensation"
            and e.outcome in ("ok", "sent")
            and e.step not in seen
        ):
            seen.append(e.step)
    return seen


def _unawaited(saga: Saga[Any]) -> set[str]:
    """Steps whose compensation is fire and forget: it starts and ends when
    its command is committed (``sent``); the participant runs it later."""
    return {
        s.name
        for s in saga
        if isinstance(s.compensate, Remote) and not s.compensate.awaited
    }


def check_run(saga: Saga[Any], run: RunRecord) -> list[Violation]:
    point = run.point.label
    out: list[Violation] = []

    def bad(rule: str, detail: str) -> None:
        out.append(Violation(point, rule, detail))

    final = run.final
    if run.error is not None:
        bad("terminal status", run.error)
    if final is None:
        if run.crashed and run.point.crash is not None and run.point.crash.commit == 1:
            if run.effects:
                effects = ", ".join(str(e) for e in run.effects)
                bad("no saga, no effects", f"the saga never existed: {effects}")
            return out
        bad("terminal status", "the saga was never stored")
        return out
    status = final.status
    if not status.terminal:
        bad("terminal status", f"stopped in {status.value}")
    elif status is not run.point.expected:
        bad(
            "terminal status",
            f"expected {run.point.expected.value}, got {status.value}"
            + (f" ({final.state.error})" if final.state.error else ""),
        )
    _check_compensations(saga, run, bad)
    _check_no_start_after_failure(saga, run, bad)
    _check_once(saga, run, bad)
    if status.terminal and (final.state.locks is not None or run.locks_left):
        left = ", ".join(run.locks_left) or str(final.state.locks)
        bad("locks released", f"ended {status.value} still holding {left}")
    return out


def _check_compensations(saga: Saga[Any], run: RunRecord, bad: Any) -> None:
    assert run.final is not None  # noqa: S101 - checked by the caller
    status = run.final.status
    observed = observed_compensations(run)
    if status in (SagaStatus.SUCCEEDED, SagaStatus.FAILED):
        if observed:
            bad("compensations", f"{status.value} saga compensated {observed}")
        return
    expected = expected_compensations(saga, run)
    failing = [step for step, _ in run.final.state.compensation_errors]
    if status is SagaStatus.COMPENSATED and sorted(observed) != sorted(expected):
        bad("compensations", f"expected {expected}, observed {observed}")
    if status is SagaStatus.COMPENSATION_FAILED:
        attempted = set(observed) | set(failing)
        complete = saga.on_compensation_failure == "continue"
        if (
            not failing
            or set(observed) & set(failing)
            or not attempted <= set(expected)
            or (complete and attempted != set(expected))
        ):
            every = "every one" if complete else "some"
            bad(
                "compensations",
                f"expected {every} of {expected} compensated or failed (failed: "
                f"{failing}), observed {observed}",
            )
    _check_compensation_order(saga, run, bad, expected, failing)


def _check_compensation_order(
    saga: Saga[Any],
    run: RunRecord,
    bad: Any,
    expected: list[str],
    failing: list[str],
) -> None:
    """No compensation starts before every compensation of the steps
    downstream of its step has ended (succeeded, or failed for good under
    the ``continue`` policy); under ``stop`` none starts after a failure."""
    starts: dict[str, int] = {}
    ends: dict[str, int] = {}
    unawaited = _unawaited(saga)
    for e in run.effects:
        if e.kind != "compensation":
            continue
        if e.step in unawaited:
            if e.outcome == "sent":
                starts.setdefault(e.step, e.seq)
                ends[e.step] = e.seq
            continue
        if e.outcome == "started":
            starts.setdefault(e.step, e.seq)
        elif e.outcome == "ok" or e.step in failing:
            ends[e.step] = e.seq
    due = set(expected)
    for step, started in starts.items():
        for below in saga.graph.descendants[step] & due:
            if ends.get(below, started) >= started:
                bad(
                    "compensation order",
                    f"{step} compensation started before {below}'s ended",
                )
    if saga.on_compensation_failure == "stop" and failing:
        stopped = max(ends.get(step, 0) for step in failing)
        late = [step for step, started in starts.items() if started > stopped]
        if late:
            bad("compensation order", f"{late} started after {failing} failed")


def _check_no_start_after_failure(saga: Saga[Any], run: RunRecord, bad: Any) -> None:
    assert run.final is not None  # noqa: S101 - checked by the caller
    failed = run.final.state.failed_step
    if failed is None or run.final.status is SagaStatus.SUCCEEDED:
        return
    ends = [
        e.seq
        for e in run.effects
        if e.step == failed
        and e.kind == "action"
        and e.outcome in ("failed", "injected")
    ]
    if not ends:
        return
    below = saga.graph.descendants
    committed = run.committed_at_crash

    def sibling(e: Effect) -> bool:
        """A step independent of the one that failed (as the steps of a
        stage are), started while it ran (its task may start after that one
        failed), or resumed after the crash."""
        if e.step in below[failed] or failed in below[e.step]:
            return False
        resumed = (
            e.generation > 1
            and committed is not None
            and committed.step(e.step).status is StepStatus.RUNNING
        )
        return e.attempt == 1 or resumed

    late = [
        e
        for e in run.effects
        if e.seq > ends[-1]
        and e.kind == "action"
        and e.outcome == "started"
        and not e.remote
        and not sibling(e)
    ]
    if late:
        bad(
            "no step after a failure",
            ", ".join(str(e) for e in late)
            + f" started after {failed!r} failed for good",
        )


def _check_once(saga: Saga[Any], run: RunRecord, bad: Any) -> None:
    committed = run.committed_at_crash
    ok = Counter((e.step, e.kind) for e in run.effects if e.outcome == "ok")
    for (step, kind), n in sorted(ok.items()):
        allowed = 1
        if committed is not None and not saga.step(step).is_remote:
            in_flight = (
                StepStatus.RUNNING if kind == "action" else StepStatus.COMPENSATING
            )
            if committed.step(step).status is in_flight:
                allowed = 2
        if n > allowed:
            runs = [str(e) for e in run.effects if (e.step, e.kind) == (step, kind)]
            bad("applied once", f"{step} {kind} applied {n} times: {runs}")
    sent = Counter(e.step for e in run.effects if e.outcome == "sent")
    for step, n in sorted(sent.items()):
        if n > 1:
            bad("applied once", f"{step} compensation sent {n} times")
    handled = Counter(
        e.message_id for e in run.effects if e.remote and e.outcome == "ok"
    )
    for message_id, n in sorted(handled.items()):
        if n > 1:
            bad("participant inbox", f"command {message_id} handled {n} times")
    if committed is not None:
        for e in run.effects:
            if e.generation < 2 or e.outcome != "started" or e.remote:  # noqa: PLR2004
                continue
            status = committed.step(e.step).status
            done = (
                status in (StepStatus.SUCCEEDED, StepStatus.FAILED)
                if e.kind == "action"
                else status in (StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED)
            )
            if done:
                bad(
                    "no re-run after a crash",
                    f"{e} although {e.step} was {status.value} when the process died",
                )
    if run.final is not None and run.final.status is SagaStatus.SUCCEEDED:
        missing = [s.name for s in saga if ok[(s.name, "action")] == 0]
        if missing:
            bad("applied once", f"succeeded without applying {missing}")
