"""The audit trail: the operator actions in a saga's history, as text.

An action is a ``saga`` line whose result names who asked (``by``): the
``*_requested`` lines of retry, resume, cancel, pause, unpause and the
actions on one compensation, a fork's ``fork_requested`` (in the source)
and ``forked_from`` (in the fork), an instance migration. Each says when,
who, what, on which step, why, and what it changed. Pure; ``sagakit show``
and the dashboard's saga page both list them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sagakit.ports.store import HistoryEntry
from sagakit.views.format import local_time

_NAMES = {
    "fork_requested": "fork",
    "forked_from": "forked from",
}


@dataclass(frozen=True, slots=True)
class AuditLine:
    """One operator action: ``changed`` lists what it changed."""

    at: float
    when: str
    by: str
    action: str
    step: str
    reason: str
    changed: tuple[str, ...]

    @property
    def what(self) -> str:
        """What changed, on one line (``-`` for nothing recorded)."""
        return "; ".join(self.changed) or "-"


def audit_lines(history: Sequence[HistoryEntry]) -> list[AuditLine]:
    """The operator actions of ``history``, in the order they were written."""
    return [_line(h, h.result) for h in history if _is_action(h)]


def _is_action(entry: HistoryEntry) -> bool:
    result = entry.result
    return entry.kind == "saga" and isinstance(result, dict) and "by" in result


def _line(entry: HistoryEntry, said: dict[str, Any]) -> AuditLine:
    outcome = entry.outcome
    action = _NAMES.get(outcome, outcome.removesuffix("_requested"))
    changed = [str(c) for c in said.get("changed", ())]
    if outcome == "forked_from":
        action = f"forked from {said.get('saga_id', '?')}"
        changed = [f"started from step {said.get('step', '?')}"]
    elif outcome == "migrated":
        changed = [f"definition v{said.get('from', '?')} -> v{said.get('to', '?')}"]
    return AuditLine(
        at=entry.started_at,
        when=local_time(entry.started_at),
        by=str(said["by"]),
        action=action,
        step=entry.step or str(said.get("step") or ""),
        reason=str(said.get("reason") or ""),
        changed=tuple(changed),
    )


def next_step(ended: bool, owner: str | None, target: str = "MODULE") -> str:
    """After an action: who runs what it started. ``owner`` is the live
    worker that drives the saga (None: nobody), ``target`` the module of
    its definitions."""
    if ended:
        return "nothing is left to run: the saga has ended"
    if owner is not None:
        return f"worker {owner} drives this saga: it goes on there"
    return (
        f"no worker owns this saga now: a running `sagakit worker {target}` "
        "claims it at its next poll; with none running, start one or run "
        f"`sagakit recover {target}`"
    )
