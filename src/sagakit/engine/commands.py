"""Commands: what the runtime must do next, in the imperative."""

from __future__ import annotations

from dataclasses import dataclass

from sagakit.engine.state import SagaState, SagaStatus


@dataclass(frozen=True, slots=True)
class RunStep:
    step: str
    attempt: int
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Compensate:
    step: str
    attempt: int
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class FinishSaga:
    status: SagaStatus


@dataclass(frozen=True, slots=True)
class CancelSteps:
    """Cancel the local runs of ``steps`` (forward actions of a fail-fast
    group whose sibling failed for good) ``grace`` seconds from now, unless
    they finished by then. Only ``async`` actions can be cancelled: the
    runtime reports each cancelled run as a failed attempt (``Cancelled``,
    not retryable) and waits for the others to finish."""

    steps: tuple[str, ...]
    grace: float = 0.0


@dataclass(frozen=True, slots=True)
class SendCancel:
    """Send the ``on_timeout`` command of ``step``'s remote action for
    ``attempt``, whose reply deadline passed: fire and forget, through the
    outbox in the same commit as the timeout (the step's failure or retry
    is decided in the same decision)."""

    step: str
    attempt: int


@dataclass(frozen=True, slots=True)
class AcquireLocks:
    """Take the locks of ``step`` (render its keys, ask the store) and, if
    they are granted, start it in the same commit (``LocksAcquired``); else
    report ``LocksBusy`` (it waits, or fails) or ``LockKeyFailed``."""

    step: str


Command = RunStep | Compensate | CancelSteps | SendCancel | FinishSaga | AcquireLocks


@dataclass(frozen=True, slots=True)
class Decision:
    """What ``decide`` made of an event: the new state and what to do next."""

    state: SagaState
    commands: tuple[Command, ...]


# The engine's hot path makes a decision and a step's run at every step: at
# a plain class's cost (the slots filled directly, as a pickle does; equal to
# what the frozen constructors make, see tests/unit/test_records.py).
_new = object.__new__
_set_decision_state = Decision.__dict__["state"].__set__
_set_decision_commands = Decision.__dict__["commands"].__set__
_set_run_name = RunStep.__dict__["step"].__set__
_set_run_attempt = RunStep.__dict__["attempt"].__set__
_set_run_delay = RunStep.__dict__["delay"].__set__


def make_decision(state: SagaState, commands: tuple[Command, ...]) -> Decision:
    """``Decision(state, commands)``."""
    new = _new(Decision)
    _set_decision_state(new, state)
    _set_decision_commands(new, commands)
    return new


def make_run_step(step: str, attempt: int) -> RunStep:
    """``RunStep(step, attempt)`` (no delay)."""
    new = _new(RunStep)
    _set_run_name(new, step)
    _set_run_attempt(new, attempt)
    _set_run_delay(new, 0.0)
    return new
