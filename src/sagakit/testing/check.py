"""``check_saga``: run a saga at every failure point and check its invariants.

::

    report = await check_saga(order_saga, lambda: Order(order_id=1))
    report.assert_ok()

The points come from the definition (see :mod:`sagakit.testing.points`); the
invariants are in :mod:`sagakit.testing.invariants`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from sagakit.adapters.store.memory import InMemoryStore
from sagakit.definition.saga import Saga
from sagakit.engine.state import SagaStatus
from sagakit.ports.store import SagaStore
from sagakit.testing.family import check_checkable, check_family
from sagakit.testing.harness import ParticipantFactory, RunOptions, run_point
from sagakit.testing.invariants import Violation
from sagakit.testing.points import (
    FailurePoint,
    crash_points,
    failing_run,
    injection_points,
)
from sagakit.testing.run_record import Effect

_SHOWN_EFFECTS = 40


@dataclass(frozen=True, slots=True)
class PointResult:
    point: FailurePoint
    status: SagaStatus | None
    """The terminal status reached; None if the saga never existed (a crash
    before its first commit)."""
    commits: int
    violations: tuple[Violation, ...]
    effects: tuple[Effect, ...]

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class CheckReport:
    saga: str
    results: list[PointResult] = field(default_factory=list)
    skipped: int = 0
    """Points left out by ``max_points``."""

    @property
    def points(self) -> list[FailurePoint]:
        return [r.point for r in self.results]

    @property
    def violations(self) -> list[Violation]:
        return [v for r in self.results for v in r.violations]

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def outcomes(self) -> dict[str, int]:
        """How many points ended in each status."""
        counts: dict[str, int] = {}
        for r in self.results:
            key = "never started" if r.status is None else r.status.value
            counts[key] = counts.get(key, 0) + 1
        return counts

    def summary(self) -> str:
        head = (
            f"check_saga({self.saga!r}): {len(self.results)} failure points"
            + (f" ({self.skipped} skipped)" if self.skipped else "")
            + f", {len(self.violations)} violations; outcomes {self.outcomes}"
        )
        lines = [head]
        for r in self.results:
            if r.ok:
                continue
            lines.append(f"- {r.point.label} (expected {r.point.expected.value}):")
            lines.extend(f"    {v.rule}: {v.detail}" for v in r.violations)
            effects = [str(e) for e in r.effects[:_SHOWN_EFFECTS]]
            more = len(r.effects) - len(effects)
            lines.append(
                "    effects: "
                + "; ".join(effects)
                + (f"; +{more}" if more > 0 else "")
            )
        return "\n".join(lines)

    def assert_ok(self) -> None:
        if not self.ok:
            raise AssertionError(self.summary())

    def __str__(self) -> str:
        return self.summary()


def _context_factory(context: Any) -> Callable[[], Any]:
    if context is None:
        return lambda: None
    if isinstance(context, BaseModel):
        return lambda: context.model_copy(deep=True)
    if isinstance(context, Mapping):
        return lambda: dict(context)
    if callable(context):
        return context  # type: ignore[no-any-return]
    raise TypeError(
        "check_saga takes a context model, a dict or a function that makes one"
    )


def _sample(points: list[FailurePoint], limit: int) -> list[FailurePoint]:
    """``limit`` points spread evenly over ``points`` (deterministic)."""
    if limit >= len(points):
        return points
    if limit <= 0:
        return []
    step = len(points) / limit
    return [points[int(i * step)] for i in range(limit)]


async def check_saga(
    saga: Saga[Any],
    context_factory: Callable[[], Any] | BaseModel | Mapping[str, Any] | None = None,
    *,
    participants: ParticipantFactory | None = None,
    max_points: int | None = None,
    store_factory: Callable[[], SagaStore] = InMemoryStore,
    run_timeout: float = 10.0,
    duplicate_commands: bool = True,
) -> CheckReport:
    """Run ``saga`` once per failure point and check the invariants each time.

    ``context_factory`` makes the saga context for each run (a model or dict
    is copied). Remote steps run on an in-process transport against the
    participants ``participants(transport, inbox_store)`` builds; commands no
    participant handles get a stub that succeeds. Every command is delivered
    twice (``duplicate_commands``), so participants must deduplicate by
    message id (``Participant`` does).

    A sub-saga step runs its child (instrumented too): the child's steps
    fail and crash like the saga's, and each instance is checked on its own
    (see :mod:`sagakit.testing.family`); a saga that runs the same saga as
    a sub-saga in two places is refused (their effects would mix).

    Local steps run in the event loop (sync functions too), with retry delays
    skipped. ``max_points`` keeps that many points, spread over the crash
    points first; ``run_timeout`` bounds each run. The report lists every point,
    its outcome and its violations; call ``report.assert_ok()`` in a test.
    """
    check_checkable(saga)
    opts = RunOptions(
        context=_context_factory(context_factory),
        participants=participants,
        store_factory=store_factory,
        run_timeout=run_timeout,
        duplicate_commands=duplicate_commands,
    )
    report = CheckReport(saga.name)
    counter = iter(range(1, 1 << 30))

    async def one(point: FailurePoint) -> int:
        run = await run_point(saga, point, f"check-{next(counter)}", opts)
        violations = check_family(saga, run)
        report.results.append(
            PointResult(
                point,
                None if run.final is None else run.final.status,
                run.commits,
                tuple(violations),
                tuple(run.effects),
            )
        )
        return run.commits

    bases = [FailurePoint(), failing_run(saga)]
    crashes: list[FailurePoint] = []
    seen: set[FailurePoint] = set()
    for point in [*bases, *injection_points(saga)]:
        if point in seen:
            continue
        seen.add(point)
        commits = await one(point)
        if point in bases:
            crashes.extend(crash_points(point, commits))
    if max_points is not None:
        room = max(0, max_points - len(report.results))
        report.skipped = max(0, len(crashes) - room)
        crashes = _sample(crashes, room)
    for point in crashes:
        await one(point)
    return report


def check_saga_sync(
    saga: Saga[Any],
    context_factory: Callable[[], Any] | BaseModel | Mapping[str, Any] | None = None,
    **options: Any,
) -> CheckReport:
    """``check_saga`` for synchronous code (``asyncio.run``)."""
    return asyncio.run(check_saga(saga, context_factory, **options))
