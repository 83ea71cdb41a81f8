"""Retry policies: how many attempts, how long to wait, which errors retry."""

from __future__ import annotations

from dataclasses import dataclass, field

from sagakit.errors import DefinitionError, FatalError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how often a failed step (or compensation) is tried again.

    ``attempts`` counts every try, the first included: ``attempts=1`` never
    retries. The wait before try ``n + 1`` is
    ``min(max_backoff, backoff * multiplier ** (n - 1))``, shortened by a random
    share of up to ``jitter`` (0 = exact, 1 = anywhere between 0 and the delay).
    An error retries when it is an instance of ``retry_on`` and not of
    ``give_up_on``; a :class:`~sagakit.errors.FatalError` never does.
    """

    attempts: int = 1
    backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 30.0
    jitter: float = 0.5
    retry_on: tuple[type[BaseException], ...] = field(default=(Exception,))
    give_up_on: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise DefinitionError(
                f"RetryPolicy.attempts must be an int, got {self.attempts!r}"
            )
        if self.attempts < 1:
            raise DefinitionError(
                f"RetryPolicy.attempts must be >= 1, got {self.attempts}"
            )
        if not (self.backoff >= 0 and self.max_backoff >= 0):  # NaN fails too
            raise DefinitionError("RetryPolicy backoff and max_backoff must be >= 0")
        if not self.multiplier >= 1:  # NaN fails too
            raise DefinitionError(
                f"RetryPolicy.multiplier must be >= 1, got {self.multiplier}"
            )
        if not 0 <= self.jitter <= 1:
            raise DefinitionError(
                f"RetryPolicy.jitter must be within [0, 1], got {self.jitter}"
            )
        for kind in (*self.retry_on, *self.give_up_on):
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise DefinitionError(
                    "RetryPolicy.retry_on/give_up_on take exception classes, "
                    f"got {kind!r}"
                )

    def retries(self, error: BaseException) -> bool:
        """Whether this kind of error is worth another attempt (budget aside)."""
        return isinstance(error, self.retry_on) and not isinstance(
            error, (FatalError, *self.give_up_on)
        )

    def delay(self, failed_attempt: int, jitter_sample: float) -> float:
        """Seconds to wait after ``failed_attempt``; ``jitter_sample`` in [0, 1)."""
        base = min(
            self.max_backoff, self.backoff * self.multiplier ** (failed_attempt - 1)
        )
        return base * (1.0 - self.jitter * jitter_sample)


NO_RETRY = RetryPolicy()
"""Try once and never again: the default for forward steps."""

COMPENSATION_RETRY = RetryPolicy(attempts=3, backoff=0.05)
"""The default for compensations, which must try hard to succeed."""
