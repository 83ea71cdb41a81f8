"""What deploying a set of saga definitions does to the live instances.

``deploy_plan`` compares the definitions of the code about to be deployed
with the unfinished instances in the store (how many of each saga, version
and fingerprint) and says, per saga and version, how many instances can
continue, need a migration (a declared hook moves them to a version the code
has), or must drain on the old version (deploying without it would strand
them). ``sagakit deploy-check`` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sagakit.definition.saga import Saga
from sagakit.runtime.registry import Registry

Verdict = Literal["continue", "migrate", "drain"]

LiveCounts = Mapping[tuple[str, int, str | None], int]
"""Unfinished instances by ``(saga_name, definition_version, fingerprint)``."""


@dataclass(slots=True)
class DeployRow:
    """One saga version that has live instances, and what deploying does to
    them: ``counts`` by verdict, and why for those that cannot continue."""

    saga: str
    version: int
    counts: dict[Verdict, int] = field(
        default_factory=lambda: {"continue": 0, "migrate": 0, "drain": 0}
    )
    reasons: list[str] = field(default_factory=list)

    @property
    def live(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "saga": self.saga,
            "version": self.version,
            "live": self.live,
            "continue": self.counts["continue"],
            "migrate": self.counts["migrate"],
            "drain": self.counts["drain"],
            "reasons": self.reasons,
        }


@dataclass(slots=True)
class DeployPlan:
    rows: list[DeployRow]

    @property
    def stranded(self) -> int:
        """Instances deploying would strand (they must drain first)."""
        return sum(row.counts["drain"] for row in self.rows)

    @property
    def safe(self) -> bool:
        return self.stranded == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "safe": self.safe,
            "stranded": self.stranded,
            "sagas": [row.to_json() for row in self.rows],
        }


def deploy_plan(sagas: Iterable[Saga[Any]], live: LiveCounts) -> DeployPlan:
    """The verdict on every live instance if ``sagas`` were deployed."""
    registry = Registry(sagas)
    rows: dict[tuple[str, int], DeployRow] = {}
    for (name, version, fingerprint), count in sorted(live.items(), key=_order):
        row = rows.setdefault((name, version), DeployRow(name, version))
        verdict, reason = _verdict(registry, name, version, fingerprint)
        row.counts[verdict] += count
        if reason is not None and reason not in row.reasons:
            row.reasons.append(reason)
    return DeployPlan(list(rows.values()))


def _order(item: tuple[tuple[str, int, str | None], int]) -> tuple[str, int, str]:
    (name, version, fingerprint), _ = item
    return (name, version, fingerprint or "")


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
