"""The instances a saga ran as sub-sagas, as ``check_saga`` finds them.

A child's id is ``<parent id>/<step>`` (see
:func:`sagakit.runtime.children.child_id`), so the family of a saga is the
ids under its own, and the step path of an instance (``pay``,
``pay/refund``) is the part of its id after the saga's.
"""

from __future__ import annotations

from sagakit.ports.store import HistoryEntry, SagaRecord, SagaStore


def path_of(root: str, saga_id: str | None) -> str:
    """The step path prefix of a sub-saga instance of ``root`` (``""`` for
    ``root`` itself)."""
    if saga_id is None or not saga_id.startswith(f"{root}/"):
        return ""
    return saga_id[len(root) + 1 :] + "/"


async def family_of(
    store: SagaStore, saga_id: str
) -> dict[str, tuple[SagaRecord, list[HistoryEntry]]]:
    """The sub-saga instances below ``saga_id`` by step path, with histories."""
    found = {}
    for child in await store.ids_with_prefix(f"{saga_id}/", limit=10_000):
        record = await store.get(child)
        found[path_of(saga_id, child)[:-1]] = (record, await store.history(child))
    return found
