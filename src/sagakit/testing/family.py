"""``check_saga`` for a saga with sub-sagas: each instance checked on its own.

The saga and every child instance it ran are checked with the invariants of
:mod:`sagakit.testing.invariants`, each against its own definition, state
and effects: a child's effects are recorded as ``<step>/<child step>``
(:func:`~sagakit.testing.instrument.instrument`), so the view of a child is the
effects under its step, renamed. The saga must reach the status the point
calls for; a child, the status its parent's step says it has: ``succeeded``
for a step that succeeded, ``compensated`` for one compensated (the child
rolled back), ``compensation_failed`` for one whose compensation failed,
and any failed ending for a step that failed (a step with a compensation of
its own, run instead of a rollback, leaves its child ``succeeded``).

To its parent, a sub-saga step did what its child did: it started with the
child's first effect, completed with the child's last forward effect if the
child succeeded, failed with its last effect if the step failed, and was
compensated (or failed to be) from the child's first compensation after that
to its last one. These effects are derived for the parent's view, so the
rules on compensations and their order apply to the step as to any other.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sagakit.definition.saga import Saga, Step
from sagakit.engine.state import SagaStatus, StepStatus
from sagakit.errors import SagaError
from sagakit.ports.store import HistoryEntry, SagaRecord
from sagakit.testing.invariants import Violation, check_run
from sagakit.testing.points import FailurePoint
from sagakit.testing.run_record import Effect, RunRecord

_UNDONE = (StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED)
_UNSUCCESSFUL = (
    SagaStatus.COMPENSATED,
    SagaStatus.FAILED,
    SagaStatus.COMPENSATION_FAILED,
)


def check_family(saga: Saga[Any], run: RunRecord) -> list[Violation]:
    """The violations of ``run`` of ``saga`` and of each child it ran."""
    return _check(saga, run, run.point.label, "")


def check_checkable(saga: Saga[Any]) -> None:
    """``SagaError`` if ``saga`` runs one saga as a sub-saga in two places:
    their effects could not be told apart."""
    seen: dict[str, str] = {}
    for path, child in _children(saga, ""):
        if child.name in seen:
            raise SagaError(
                f"check_saga cannot check saga {saga.name!r}: it runs "
                f"{child.name!r} as a sub-saga at {seen[child.name]} and at {path}"
            )
        seen[child.name] = path


def _children(saga: Saga[Any], prefix: str) -> list[tuple[str, Saga[Any]]]:
    found = []
    for step, child in saga.children.items():
        found.append((prefix + step, child))
        found.extend(_children(child, f"{prefix}{step}/"))
    return found


def _check(saga: Saga[Any], view: RunRecord, label: str, path: str) -> list[Violation]:
    checked = replace(view, effects=_with_children(saga, view))
    out = [
        Violation(
            label, v.rule, f"in sub-saga {path[:-1]}: {v.detail}" if path else v.detail
        )
        for v in check_run(saga, checked)
    ]
    final = view.final
    if final is None:
        return out
    for step, child in saga.children.items():
        found = view.family.get(step)
        if found is None:
            continue  # the step never ran its child
        record = found[0]
        status = final.state.step(step).status
        if not saga.step(step).rolls_back_child and status in _UNDONE:
            status = StepStatus.SUCCEEDED  # its own compensation: no rollback
        expected = _expected(status, record.status)
        out.extend(
            _check(
                child, _child_view(view, step, found, expected), label, f"{path}{step}/"
            )
        )
    return out


def _expected(step: StepStatus, child: SagaStatus) -> SagaStatus:
    """The status a child must have ended in, given its step's."""
    if step is StepStatus.SUCCEEDED:
        return SagaStatus.SUCCEEDED
    if step is StepStatus.COMPENSATED:
        return SagaStatus.COMPENSATED
    if step is StepStatus.COMPENSATION_FAILED:
        return SagaStatus.COMPENSATION_FAILED
    if step is StepStatus.FAILED and child not in _UNSUCCESSFUL:
        return SagaStatus.COMPENSATED
    return child  # the step failed with it, or never ended (reported above)


def _child_view(
    run: RunRecord,
    step: str,
    found: tuple[SagaRecord, list[HistoryEntry]],
    expected: SagaStatus,
) -> RunRecord:
    """What the child of ``step`` observed, as a run of its own."""
    prefix = f"{step}/"

    def below(name: str) -> str | None:
        return name[len(prefix) :] if name.startswith(prefix) else None

    point = FailurePoint(
        tuple(
            replace(i, step=name)
            for i in run.point.injections
            if (name := below(i.step)) is not None
        ),
        run.point.crash,
        expected,
    )
    return RunRecord(
        point,
        effects=[
            replace(e, step=name)
            for e in run.effects
            if (name := below(e.step)) is not None
        ],
        commits=run.commits,
        committed_at_crash=run.committed_family.get(step),
        crashed=run.crashed,
        final=found[0],
        history=found[1],
        family={
            name: value
            for key, value in run.family.items()
            if (name := below(key)) is not None
        },
        committed_family={
            name: value
            for key, value in run.committed_family.items()
            if (name := below(key)) is not None
        },
    )


def _with_children(saga: Saga[Any], view: RunRecord) -> list[Effect]:
    """``view``'s effects, those of each sub-saga step derived from its
    child's (see the module) in place of the child's."""
    own = [e for e in view.effects if "/" not in e.step]
    final = view.final
    if final is None:
        return own
    for step in saga.children:
        found = view.family.get(step)
        if found is not None:
            own.extend(
                _derived(saga.step(step), view, final.state.step(step).status, found[1])
            )
    return sorted(own, key=lambda e: e.seq)


def _derived(
    spec: Step, view: RunRecord, status: StepStatus, history: list[HistoryEntry]
) -> list[Effect]:
    """The effects of sub-saga step ``spec`` (whose status is ``status``)."""
    mine = [e for e in view.effects if e.step.startswith(f"{spec.name}/")]
    if not mine:
        return []

    def at(e: Effect, kind: str, outcome: str) -> Effect:
        return Effect(e.seq, e.generation, spec.name, kind, 1, outcome)

    out = [at(mine[0], "action", "started")]
    forward = [e for e in mine if e.kind == "action"]
    said = {h.outcome for h in history if h.kind == "saga"}
    if "succeeded" in said and forward:
        out.append(at(forward[-1], "action", "ok"))
    if status is StepStatus.FAILED:
        out.append(at(mine[-1], "action", "failed"))
    if "rollback_requested" not in said:
        return out
    after = forward[-1].seq if forward else -1
    undo = [e for e in mine if e.kind == "compensation" and e.seq > after]
    if undo:
        out.append(at(undo[0], "compensation", "started"))
    last = undo[-1] if undo else (forward or mine)[-1]
    if status is StepStatus.COMPENSATED:
        out.append(at(last, "compensation", "ok"))
    elif status is StepStatus.COMPENSATION_FAILED:
        out.append(at(last, "compensation", "failed"))
    return out
