"""Semantic locks in the engine: which steps wait for their locks, what a
grant, a refusal or a timeout does, and when the locks go.

A step that declares locks does not start when its dependencies succeed: it
joins ``SagaState.locks.waits`` and an ``AcquireLocks`` command asks the
runtime to render its keys and take them in the commit that starts it
(``LocksAcquired``; see ``decide``). A refusal (``LocksBusy``) makes it wait
in the store's first-come queue of each key (mode ``wait``, until its
``timeout``) or fails it at once (mode ``fail``, or when waiting would close
a wait-for cycle between sagas: a deadlock). A step that failed over its
locks never ran: nothing of it is compensated.

:func:`settle` runs after every decision of an instance with locks: an
instance that ended holds and waits for nothing, one that rolls back waits
for nothing (those steps will not start), one that is paused leaves the
queues (it joins them again when unpaused), and a lock whose ``until`` step
succeeded is released. The runtime writes the difference to the store with
the commit (:func:`lock_change` in ``sagakit.ports.store``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sagakit.definition.saga import Saga, Step
from sagakit.engine.commands import AcquireLocks, Command, Decision
from sagakit.engine.events import LockReleaseRequested, LocksAcquired, LocksBusy
from sagakit.engine.lockstate import LockHold, LockState, LockWait, lock_state
from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus, StepStatus
from sagakit.errors import StateError

_EMPTY = LockState()


def gate(
    saga: Saga[Any], state: SagaState, names: list[str], at: float
) -> tuple[SagaState, list[str], list[Command]]:
    """Of ``names`` (steps about to start), hold back those that take locks:
    each waits for them, asked for at once unless it waits in the queues
    already (then the runtime wakes it). Returns the state, the steps that
    start now, and the ``AcquireLocks`` commands."""
    locked = saga.lock_steps
    if not any(n in locked for n in names):
        return state, names, []
    current = state.locks or _EMPTY
    waits = dict(current.waits)
    commands: list[Command] = []
    start = []
    for name in names:
        if name not in locked:
            start.append(name)
            continue
        wait = waits.get(name)
        if wait is None:
            waits[name] = LockWait(since=at)
        if wait is None or not wait.keys:
            commands.append(AcquireLocks(name))
    return state.but(locks=LockState(current.held, waits)), start, commands


def waiting(state: SagaState) -> tuple[str, ...]:
    """The steps that wait for their locks."""
    return () if state.locks is None else tuple(state.locks.waits)


def ask_again(state: SagaState) -> tuple[Command, ...]:
    """``AcquireLocks`` for every step that waits (a running saga's)."""
    if state.status is not SagaStatus.RUNNING or state.paused:
        return ()
    return tuple(AcquireLocks(step) for step in waiting(state))


def waiting_for(state: SagaState, step: str, what: str) -> LockWait:
    """How ``step`` waits; ``StateError`` (about ``what``) if it does not."""
    wait = None if state.locks is None else state.locks.waits.get(step)
    if wait is None or state.status is not SagaStatus.RUNNING:
        raise StateError(
            f"saga {state.saga_id}: {what} for step {step!r}, which does not "
            "wait for its locks (stale)"
        )
    return wait


def acquired(saga: Saga[Any], state: SagaState, event: LocksAcquired) -> SagaState:
    """``state`` holding the keys granted to ``event.step``, which no longer
    waits (the caller starts it)."""
    waiting_for(state, event.step, "locks granted")
    current = state.locks or _EMPTY
    held = dict(current.held)
    for lock, key in zip(saga.step(event.step).lock_specs, event.keys, strict=True):
        until = lock.until
        before = held.get(key)
        if before is not None and (before.until is None or until is None):
            until = None  # held already, to the end: it stays so
        held[key] = LockHold(event.step, until)
    waits = {s: w for s, w in current.waits.items() if s != event.step}
    return state.but(locks=lock_state(held, waits))


def busy(saga: Saga[Any], state: SagaState, event: LocksBusy) -> SagaState | ErrorInfo:
    """``state`` with ``event.step`` waiting in the queues of its keys, or
    the error it fails with: a deadlock, a busy key locked in mode
    ``fail``, or (already) its timeout."""
    wait = waiting_for(state, event.step, "locks refused")
    specs = saga.step(event.step).lock_specs
    if event.deadlock:
        cycle = " -> ".join((state.saga_id, *event.deadlock, state.saga_id))
        return ErrorInfo(
            "LockDeadlock",
            f"step {event.step!r} would wait for {_listed(event.holders)}, "
            f"closing a wait-for cycle: {cycle}",
        )
    timeouts = []
    for lock, key in zip(specs, event.keys, strict=True):
        if key not in event.holders:
            continue
        if lock.mode == "fail":
            return ErrorInfo(
                "LockUnavailable",
                f"step {event.step!r}: {key} is held by saga {event.holders[key]}",
            )
        if lock.timeout is not None:
            timeouts.append(lock.timeout)
    deadline = wait.since + min(timeouts) if timeouts else None
    if deadline is not None and deadline <= event.at:
        return _timed_out(event.step, wait, event.at)
    current = state.locks or _EMPTY
    mine = current.held
    keys = tuple(dict.fromkeys(k for k in event.keys if k not in mine))
    waits = dict(current.waits)
    waits[event.step] = LockWait(wait.since, keys, deadline)
    return state.but(locks=LockState(current.held, waits))


def _listed(holders: dict[str, str] | Any) -> str:
    return ", ".join(f"{key} (saga {saga})" for key, saga in sorted(holders.items()))


def _timed_out(step: str, wait: LockWait, at: float) -> ErrorInfo:
    return ErrorInfo(
        "LockTimeout",
        f"step {step!r} waited {at - wait.since:.3g}s for "
        f"{', '.join(wait.keys) or 'its locks'}",
    )


def expired(state: SagaState, at: float) -> list[tuple[str, ErrorInfo]]:
    """The waiting steps whose lock timeout passed, each with its error."""
    if state.locks is None or state.status is not SagaStatus.RUNNING:
        return []
    return [
        (step, _timed_out(step, wait, at))
        for step, wait in state.locks.waits.items()
        if wait.deadline is not None and wait.deadline <= at
    ]


def next_deadline(state: SagaState) -> float | None:
    """When the first lock wait of ``state`` times out, if one can."""
    if state.locks is None:
        return None
    due = [w.deadline for w in state.locks.waits.values() if w.deadline is not None]
    return min(due) if due else None


def release_requested(state: SagaState, event: LockReleaseRequested) -> SagaState:
    """``state`` without ``event.key`` (an operator's release)."""
    held = {} if state.locks is None else state.locks.held
    if event.key not in held:
        raise StateError(f"saga {state.saga_id} does not hold lock {event.key!r}")
    assert state.locks is not None  # noqa: S101 - held is its
    rest = {k: h for k, h in held.items() if k != event.key}
    return state.but(locks=lock_state(rest, dict(state.locks.waits)))


def settle(decision: Decision) -> Decision:
    """``decision`` with its state's locks as the rules of the module say."""
    state = decision.state
    current = state.locks
    if current is None:
        return decision
    if state.status.terminal:
        return Decision(state.but(locks=None), decision.commands)
    held, waits = current.held, current.waits
    if waits and state.status is not SagaStatus.RUNNING:
        waits = {}
    elif state.paused and any(w.keys for w in waits.values()):
        waits = {s: LockWait(w.since, (), w.deadline) for s, w in waits.items()}
    steps = state.steps
    done = [
        key
        for key, hold in held.items()
        if hold.until is not None
        and (s := steps.get(hold.until)) is not None
        and s.status is StepStatus.SUCCEEDED
    ]
    if done:
        held = {k: h for k, h in held.items() if k not in done}
    if held is current.held and waits is current.waits:
        return decision
    return Decision(state.but(locks=lock_state(held, waits)), decision.commands)


def keys_of(step: Step, ctx: Any, results: dict[str, Any]) -> tuple[str, ...]:
    """The keys ``step``'s locks render to (``LookupError`` if one cannot)."""
    return tuple(lock.render(ctx, results) for lock in step.lock_specs)


def without(commands: Iterable[Command], steps: Iterable[str]) -> tuple[Command, ...]:
    """``commands`` but the ``AcquireLocks`` of ``steps``."""
    gone = set(steps)
    return tuple(
        c for c in commands if not (isinstance(c, AcquireLocks) and c.step in gone)
    )
