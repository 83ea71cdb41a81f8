"""Moving an instance from an older version of its saga to a newer one.

``Saga("order", steps, version=2, migrate_from={1: Migration(...)})``
declares how an unfinished instance of version 1 becomes one of version 2:
``steps`` renames steps (old name -> new name; a step missing from the new
definition is dropped, a new step starts pending), ``context`` maps the
stored context (a JSON dict) to the new one. A plain function in
``migrate_from`` is a ``Migration`` with only that context mapping.

Migrations are applied by ``sagakit migrate-instances`` (an operator's
choice), or by any process that has the newer version registered when
``auto=True``. Each applied migration is a history line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sagakit.errors import DefinitionError

ContextMap = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Migration:
    """How an instance of an older version becomes one of this version."""

    steps: Mapping[str, str] = field(default_factory=dict)
    """Old step name -> new step name, for renamed steps."""
    context: ContextMap | None = None
    """The stored context of the old version -> the new one."""
    auto: bool = False
    """Applied by any process with the new version, without an operator."""

    def __post_init__(self) -> None:
        if not isinstance(self.steps, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.steps.items()
        ):
            raise DefinitionError("Migration steps must map old step names to new ones")
        if self.context is not None and not callable(self.context):
            raise DefinitionError("Migration context must be a function of a dict")

    def step_name(self, old: str) -> str:
        return self.steps.get(old, old)


def migrations_of(
    name: str,
    version: int,
    declared: Mapping[int, Migration | ContextMap] | None,
    step_names: frozenset[str],
) -> dict[int, Migration]:
    """``migrate_from`` checked and normalised (functions become Migrations)."""
    found: dict[int, Migration] = {}
    for old, how in (declared or {}).items():
        if isinstance(old, bool) or not isinstance(old, int) or not 1 <= old < version:
            raise DefinitionError(
                f"saga {name!r}: migrate_from keys are older versions (1 to "
                f"{version - 1}), got {old!r}"
            )
        migration = how if isinstance(how, Migration) else Migration(context=how)
        unknown = sorted(set(migration.steps.values()) - step_names)
        if unknown:
            raise DefinitionError(
                f"saga {name!r}: the migration from v{old} renames steps to "
                f"{unknown}, which v{version} does not have"
            )
        found[old] = migration
    return found
