"""Applying declared migrations to stored instances.

An instance of a version no longer registered moves to the newest registered
version that declares a migration from it (``Saga(migrate_from=...)``): its
state and context are mapped, its definition version and fingerprint
replaced, and a ``migrated`` line (from, to, by whom) joins its history, in
one save. ``sagakit migrate-instances`` applies them on an operator's word;
a process applies those declared ``auto=True`` when it recovers.

The instances a process can neither drive nor migrate are left waiting,
with the reason; :func:`left_waiting` counts them by saga and version.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

from sagakit.engine.migrate import migrated_state
from sagakit.errors import ConcurrencyError, SagaNotFound, StateError
from sagakit.ports.clock import Clock
from sagakit.ports.store import SagaRecord, SagaRepository, saga_line
from sagakit.runtime import adoption
from sagakit.runtime.deploy import LiveCounts
from sagakit.runtime.driver import Driver
from sagakit.runtime.registry import Registry

logger = logging.getLogger("sagakit.runtime.migrate")


def migratable(registry: Registry, record: SagaRecord, *, auto_only: bool) -> bool:
    """A declared migration applies to ``record`` (an ``auto`` one, if asked)."""
    versions = registry.versions.get(record.saga_name, {})
    if record.status.terminal or record.definition_version in versions:
        return False
    target = registry.migration_target(record.saga_name, record.definition_version)
    if target is None:
        return False
    return target.migrate_from[record.definition_version].auto or not auto_only


async def migrate_instance(
    store: SagaRepository,
    registry: Registry,
    record: SagaRecord,
    *,
    clock: Clock,
    by: str,
    reason: str,
) -> SagaRecord:
    """Move ``record`` to the version that declares a migration from its own,
    and save it (``StateError`` if it cannot move, ``ConcurrencyError`` if it
    changed meanwhile); who moved it and why go into its ``migrated``
    history line (the audit trail)."""
    old = record.definition_version
    target = registry.migration_target(record.saga_name, old)
    if target is None:
        raise LookupError(f"no migration from {record.saga_name} v{old}")
    migration = target.migrate_from[old]
    state = migrated_state(record.state, target, migration)
    context = record.context
    if migration.context is not None:
        context = migration.context(dict(context))
    context = target.context.model_validate(context).model_dump(mode="json")
    now = clock.now()
    moved = replace(
        record,
        version=record.version + 1,
        state=state,
        status=state.status,
        context=context,
        updated_at=now,
        deadline=state.next_deadline,
        definition_version=target.version,
        fingerprint=target.fingerprint,
        waiting=None,
    )
    result = {"from": old, "to": target.version, "by": by, "reason": reason}
    renamed = {"renamed": dict(migration.steps)}
    entry = saga_line(record.saga_id, "migrated", now, result | renamed)
    await store.save(moved, record.version, [entry])
    logger.info(
        "saga migrated",
        extra={
            "action": "saga_migrated",
            "saga_id": record.saga_id,
            "saga": record.saga_name,
            "from": old,
            "to": target.version,
            "by": by,
        },
    )
    return moved


async def report_stranded(
    driver: Driver, registry: Registry, limit: int, gone: Collection[str] = ()
) -> list[str]:
    """Settle the unfinished instances of the registered sagas that this
    process cannot drive and nobody holds: migrate those with an ``auto``
    migration, mark the others waiting with the reason (each once: they are
    neither claimed nor reported again); a lease of a ``gone`` owner (known
    dead) does not count as held. Returns the ids marked waiting."""
    found = await driver.store.stranded(
        registry.names(), registry.keys(), limit=limit, gone=gone
    )
    waiting: list[SagaRecord] = []
    for record in found:
        reason = registry.reason(record) or ""
        if migratable(registry, record, auto_only=True):
            try:
                await migrate_instance(
                    driver.store,
                    registry,
                    record,
                    clock=driver.clock,
                    by=driver.worker_id,
                    reason=AUTO_REASON,
                )
                continue
            except (ConcurrencyError, SagaNotFound):
                continue  # it moved meanwhile: the next look decides
            except StateError as exc:
                reason = f"{reason}; its migration was refused: {exc}"
        elif migratable(registry, record, auto_only=False):
            reason += MIGRATION_DECLARED
        await adoption.mark_waiting(driver, record, reason)
        waiting.append(replace(record, waiting=reason))
    for left in _grouped(
        (r.saga_name, r.definition_version, r.waiting, 1) for r in waiting
    ):
        logger.warning(
            str(left),
            extra={
                "action": "sagas_left_waiting",
                "saga": left.saga,
                "version": left.version,
                "count": left.count,
                "reason": left.reason,
            },
        )
    return [r.saga_id for r in waiting]


AUTO_REASON = "its migration is declared auto=True"
"""Why a process migrated an instance without an operator (in its history)."""
MIGRATION_DECLARED = "; a migration is declared: sagakit migrate-instances"
"""Said of an instance waiting for an operator to apply its migration."""


@dataclass(frozen=True, slots=True)
class LeftWaiting:
    """Unfinished instances of one saga version a process leaves waiting."""

    saga: str
    version: int
    count: int
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.count} saga(s) of {self.saga} v{self.version} left waiting: "
            f"{self.reason}"
        )


def left_waiting(registry: Registry, live: LiveCounts) -> list[LeftWaiting]:
    """Of ``live`` (unfinished instances by saga, version and fingerprint, as
    ``live_definitions`` counts them), those of the sagas registered in
    ``registry`` that it cannot drive, by saga and version, with why."""
    found: list[tuple[str, int, str | None, int]] = []
    for (name, version, fingerprint), count in sorted(
        live.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or "")
    ):
        reason = registry.reason_for(name, version, fingerprint)
        if name not in registry.versions or reason is None:
            continue
        declared = registry.migration_target(name, version) is not None
        if declared and version not in registry.versions[name]:
            reason += MIGRATION_DECLARED
        found.append((name, version, reason, count))
    return _grouped(found)


def _grouped(
    found: Iterable[tuple[str, int, str | None, int]],
) -> list[LeftWaiting]:
    """``(saga, version, reason, count)`` as one :class:`LeftWaiting` per saga
    and version, in the order first met; distinct reasons are joined."""
    counts: Counter[tuple[str, int]] = Counter()
    reasons: dict[tuple[str, int], list[str]] = {}
    for name, version, reason, count in found:
        counts[name, version] += count
        said = reasons.setdefault((name, version), [])
        if reason and reason not in said:
            said.append(reason)
    return [
        LeftWaiting(name, version, count, " / ".join(reasons[name, version]))
        for (name, version), count in counts.items()
    ]
