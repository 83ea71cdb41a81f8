"""Applying declared migrations to stored instances.

An instance of a version no longer registered moves to the newest registered
version that declares a migration from it (``Saga(migrate_from=...)``): its
state and context are mapped, its definition version and fingerprint
replaced, and a ``migrated`` line (from, to, by whom) joins its history, in
one save. ``sagakit migrate-instances`` applies them on an operator's word;
a process applies those declared ``auto=True`` when it recovers.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import replace

from sagakit.engine.migrate import migrated_state
from sagakit.errors import ConcurrencyError, SagaNotFound, StateError
from sagakit.ports.clock import Clock
from sagakit.ports.store import SagaRecord, SagaRepository, saga_line
from sagakit.runtime import adoption
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
) -> SagaRecord:
    """Move ``record`` to the version that declares a migration from its own,
    and save it (``StateError`` if it cannot move, ``ConcurrencyError`` if it
    changed meanwhile)."""
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
    result = {"from": old, "to": target.version, "by": by}
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
    waiting = []
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
                )
                continue
            except (ConcurrencyError, SagaNotFound):
                continue  # it moved meanwhile: the next look decides
            except StateError as exc:
                reason = f"{reason}; its migration was refused: {exc}"
        elif migratable(registry, record, auto_only=False):
            reason = f"{reason}; a migration is declared: sagakit migrate-instances"
        await adoption.mark_waiting(driver, record, reason)
        waiting.append(record.saga_id)
    return waiting
