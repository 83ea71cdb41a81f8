"""What one checked run observed: the effects at each step, in order, and
the process ("generation") each happened in."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from dataclasses import dataclass, field
from typing import Any

from sagakit.engine.state import SagaState
from sagakit.ports.store import HistoryEntry, SagaRecord
from sagakit.testing.points import FailurePoint

GENERATION: contextvars.ContextVar[int] = contextvars.ContextVar(
    "sagakit_check_generation", default=0
)
"""The process (orchestrator generation) the running code belongs to."""


class CrashSimulated(BaseException):
    """The simulated death of the process at a commit (not an ``Exception``:
    nothing in the library may catch it and carry on)."""


@dataclass(frozen=True, slots=True)
class Effect:
    """One thing that happened at a step: ``outcome`` is ``started``, ``ok``,
    ``failed`` (user code raised) or ``injected`` (the checker failed it).
    ``generation`` is the process it happened in (2 = after the crash);
    ``message_id`` is the command of a remote step."""

    seq: int
    generation: int
    step: str
    kind: str
    attempt: int
    outcome: str
    remote: bool = False
    message_id: str | None = None

    def __str__(self) -> str:
        where = f" msg={self.message_id}" if self.message_id else ""
        return (
            f"#{self.seq} g{self.generation} {self.step}.{self.kind}"
            f"[{self.attempt}] {self.outcome}{where}"
        )


@dataclass
class Generation:
    number: int
    dead: bool = False
    crashed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class RunRecord:
    """What one run observed."""

    point: FailurePoint
    effects: list[Effect] = field(default_factory=list)
    root: str = ""
    """The saga's id (its sub-sagas' ids are under it)."""
    commits: int = 0
    committed_at_crash: SagaState | None = None
    crashed: bool = False
    final: SagaRecord | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    family: dict[str, tuple[SagaRecord, list[HistoryEntry]]] = field(
        default_factory=dict
    )
    """The sub-sagas' instances as they ended, by step path from the saga
    (``pay``, ``pay/refund``...), with their histories."""
    committed_family: dict[str, SagaState] = field(default_factory=dict)
    """The sub-sagas' committed states when the process died, by path."""
    error: str | None = None
    locks_left: list[str] = field(default_factory=list)
    """Lock keys the store says the saga holds or queues for at the end."""
    _calls: dict[tuple[str, str], int] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    generation: Generation = field(default_factory=lambda: Generation(1))
    dead: set[int] = field(default_factory=set)

    def record(
        self, step: str, kind: str, attempt: int, outcome: str, **kw: Any
    ) -> None:
        gen = GENERATION.get() or self.generation.number
        self.effects.append(
            Effect(next(self._seq), gen, step, kind, attempt, outcome, **kw)
        )

    def next_attempt(self, step: str, kind: str) -> int:
        n = self._calls.get((step, kind), 0) + 1
        self._calls[(step, kind)] = n
        return n
