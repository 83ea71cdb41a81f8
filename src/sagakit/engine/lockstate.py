"""What a saga instance holds and waits for of its semantic locks.

``SagaState.locks`` is None for an instance that holds no lock and waits for
none (every saga without locks, always): its stored state is then as before
locks existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class LockHold:
    """A key the instance holds: taken when ``step`` started, released when
    ``until`` succeeds (None: when the saga ends)."""

    step: str
    until: str | None = None


@dataclass(frozen=True, slots=True)
class LockWait:
    """A step that waits for its locks before it starts.

    ``since`` is when it first asked; ``keys`` the keys it queues for (empty
    until a first attempt rendered them, and while the saga is paused); past
    ``deadline`` (if any) it fails with ``LockTimeout``."""

    since: float
    keys: tuple[str, ...] = ()
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class LockState:
    """The keys held (by key) and the steps waiting (by step)."""

    held: dict[str, LockHold] = field(default_factory=dict)
    waits: dict[str, LockWait] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.held:
            out["held"] = {
                key: {"step": h.step, "until": h.until} for key, h in self.held.items()
            }
        if self.waits:
            out["waits"] = {
                step: {"since": w.since, "keys": list(w.keys), "deadline": w.deadline}
                for step, w in self.waits.items()
            }
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> LockState | None:
        if not data:
            return None
        held = {
            key: LockHold(h["step"], h.get("until"))
            for key, h in data.get("held", {}).items()
        }
        waits = {
            step: LockWait(w["since"], tuple(w.get("keys", ())), w.get("deadline"))
            for step, w in data.get("waits", {}).items()
        }
        return cls(held, waits)


def lock_state(
    held: dict[str, LockHold], waits: dict[str, LockWait]
) -> LockState | None:
    """``LockState(held, waits)``, or None when both are empty."""
    return LockState(held, waits) if held or waits else None
