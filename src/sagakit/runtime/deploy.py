"""What deploying a set of definitions does to the live instances.

``deploy_plan`` compares the definitions of the code about to be deployed
with the unfinished instances in the store (how many of each saga, version
and fingerprint) and says, per saga and version, how many instances can
continue, need a migration (a declared hook moves them to a version the code
has), or must drain on the old version (deploying without it would strand
them). Workflow apps and choreographies judge their live instances the same
way (:func:`judge_rows`, with their own rules) into the plan's
``workflows`` and ``choreographies``. ``sagakit deploy-check`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from sagakit.definition.saga import Saga
from sagakit.runtime.registry import Registry

Verdict = Literal["continue", "migrate", "drain"]
Judged = tuple[Verdict, str | None]
"""A verdict on some live instances, and why when they cannot continue."""

LiveCounts = Mapping[tuple[str, int, str | None], int]
"""Unfinished instances by ``(saga_name, definition_version, fingerprint)``."""

K = TypeVar("K", bound=tuple[Any, ...])


@dataclass(slots=True)
class DeployRow:
    """One version of a saga (or of a workflow app, a choreography: ``kind``)
    that has live instances, and what deploying does to them: ``counts`` by
    verdict, and why for those that cannot continue."""

    name: str
    version: int
    kind: str = "saga"
    counts: dict[Verdict, int] = field(
        default_factory=lambda: {"continue": 0, "migrate": 0, "drain": 0}
    )
    reasons: list[str] = field(default_factory=list)

    @property
    def live(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            self.kind: self.name,
            "version": self.version,
            "live": self.live,
            "continue": self.counts["continue"],
            "migrate": self.counts["migrate"],
            "drain": self.counts["drain"],
            "reasons": self.reasons,
        }


@dataclass(slots=True)
class DeployPlan:
    """The rows of sagas, workflow apps and choreographies with live
    instances."""

    rows: list[DeployRow]
    workflows: list[DeployRow] = field(default_factory=list)
    choreographies: list[DeployRow] = field(default_factory=list)

    @property
    def every_row(self) -> list[DeployRow]:
        return [*self.rows, *self.workflows, *self.choreographies]

    @property
    def stranded(self) -> int:
        """Instances deploying would strand (they must drain first)."""
        return sum(row.counts["drain"] for row in self.every_row)

    @property
    def safe(self) -> bool:
        return self.stranded == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "safe": self.safe,
            "stranded": self.stranded,
            "sagas": [row.to_json() for row in self.rows],
            "workflows": [row.to_json() for row in self.workflows],
            "choreographies": [row.to_json() for row in self.choreographies],
        }


def judge_rows(
    live: Mapping[K, int], kind: str, judge: Callable[[K], Judged]
) -> list[DeployRow]:
    """One row per name and version of ``live`` (counts keyed by tuples that
    start with the name and the version), each count added to the verdict
    ``judge`` gives its key."""
    rows: dict[tuple[str, int], DeployRow] = {}
    for key, count in sorted(live.items(), key=lambda item: _order(item[0])):
        name, version = key[0], key[1]
        row = rows.setdefault((name, version), DeployRow(name, version, kind))
        verdict, reason = judge(key)
        row.counts[verdict] += count
        if reason is not None and reason not in row.reasons:
            row.reasons.append(reason)
    return list(rows.values())


def deploy_plan(sagas: Iterable[Saga[Any]], live: LiveCounts) -> DeployPlan:
    """The verdict on every live saga instance if ``sagas`` were deployed."""
    registry = Registry(sagas)
    return DeployPlan(judge_rows(live, "saga", lambda key: _verdict(registry, *key)))


def _order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple("" if part is None else part for part in key)


def _verdict(
    registry: Registry, name: str, version: int, fingerprint: str | None
) -> tuple[Verdict, str | None]:
    if name not in registry.versions:
        return "drain", f"no saga named {name!r} in the code"
    reason = registry.reason_for(name, version, fingerprint)
    if reason is None:
        return "continue", None
    target = registry.migration_target(name, version)
    if target is not None and version not in registry.versions[name]:
        return "migrate", f"v{version} -> v{target.version} by its declared migration"
    return "drain", reason
