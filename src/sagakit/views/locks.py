"""Semantic locks as plain data for the CLI and the dashboard: pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagakit.ports.locks import LockTable
from sagakit.views.format import age


def locks_json(
    table: LockTable, now: float, held_up: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Holders (with how many queue for each key, and ``held_up``: why the
    holder cannot go on, None if it can) and waiters (with their place in
    the key's queue, 1 first), each with its age. ``held_up`` maps saga ids
    to that reason (:func:`sagakit.admin.held_up`)."""
    stuck = held_up or {}
    places: dict[str, int] = {}
    waiters = []
    for w in table.waiters:
        places[w.key] = places.get(w.key, 0) + 1
        waiters.append(
            {
                "key": w.key,
                "saga_id": w.saga_id,
                "step": w.step,
                "since": w.since,
                "age": age(now - w.since),
                "place": places[w.key],
            }
        )
    holders = [
        {
            "key": h.key,
            "saga_id": h.saga_id,
            "step": h.step,
            "since": h.since,
            "age": age(now - h.since),
            "waiting": places.get(h.key, 0),
            "held_up": stuck.get(h.saga_id),
        }
        for h in table.holders
    ]
    return {"holders": holders, "waiters": waiters}
