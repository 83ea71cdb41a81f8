"""Semantic locks as plain data for the CLI and the dashboard: pure, no I/O."""

from __future__ import annotations

from typing import Any

from sagakit.ports.locks import LockTable
from sagakit.views.format import age


def locks_json(table: LockTable, now: float) -> dict[str, Any]:
    """Holders (with how many queue for each key) and waiters (with their
    place in the key's queue, 1 first), each with its age."""
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
        }
        for h in table.holders
    ]
    return {"holders": holders, "waiters": waiters}
