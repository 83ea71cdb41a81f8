"""What to tell, whom, and how hard to try: :class:`Hooks`."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from sagakit.errors import HookError, SagaError
from sagakit.hooks.event import ALL_EVENTS, EventKind, HookEvent
from sagakit.hooks.webhook import Webhook

Callback = Callable[[HookEvent], Awaitable[None] | None]
"""A function (plain or ``async``) given each event; raising fails the
delivery, which is tried again."""

Target = Callable[[HookEvent], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HookRetry:
    """How often and how patiently a notification is tried: ``attempts`` in
    all, waiting ``backoff`` seconds after the first failure, twice as long
    after each next one (with +-20% jitter), at most ``max_backoff``. The
    default gives up after about an hour and a half."""

    attempts: int = 20
    backoff: float = 1.0
    max_backoff: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise SagaError(f"hook attempts must be >= 1, got {self.attempts}")
        if not 0 < self.backoff <= self.max_backoff:
            raise SagaError(
                "hook backoff must be > 0 and <= max_backoff, got "
                f"{self.backoff} and {self.max_backoff}"
            )

    def delay(self, failures: int, jitter: float = 0.5) -> float | None:
        """Seconds before the next attempt once ``failures`` attempts failed;
        None when none is left. ``jitter`` is a number in [0, 1)."""
        if failures >= self.attempts:
            return None
        base = min(self.max_backoff, self.backoff * 2.0 ** max(0, failures - 1))
        return float(base * (0.8 + 0.4 * jitter))


def _positive(name: str, value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise SagaError(f"{name} must be > 0 seconds (or None: never), got {value}")
    return value


def _call(callback: Callback) -> Target:
    """``callback`` as a coroutine function: a plain one runs in a thread,
    so a slow one does not stall the event loop."""
    is_async = inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
        getattr(callback, "__call__", None)  # noqa: B004 - async __call__ objects
    )

    async def call(event: HookEvent) -> None:
        try:
            if is_async:
                await callback(event)  # type: ignore[misc]
            else:
                await asyncio.to_thread(callback, event)
        except HookError:
            raise
        except Exception as exc:
            raise HookError(f"callback failed: {type(exc).__name__}: {exc}") from exc

    return call


class Hooks:
    """Whom to tell, and about what.

    ``callback`` is given each event (a :class:`HookEvent`); ``webhook`` is
    a URL that each event is POSTed to as JSON signed with ``secret``
    (HMAC-SHA256, see :func:`~sagakit.hooks.verify_signature`). Either or
    both. Events: ``saga.failed`` and ``saga.compensation_failed`` when a
    saga ends so; ``saga.stuck`` when an unfinished saga has not changed
    for ``stuck_after`` seconds and nobody drives it (unclaimed, its
    owner's lease expired, or waiting for a definition), or has been paused
    for ``paused_after``; ``lock.waiting`` when a saga has waited for a lock
    ``lock_wait_after`` seconds (read from the store's semantic locks, or
    a notifier's ``lock_waits``).
    ``events`` picks some of them; a threshold of None turns its event off.

    Each delivery waits ``timeout`` seconds at most; failures are retried by
    ``retry``. A notification older than ``max_age`` when a notifier first
    gets to it is dropped (logged) instead of sent: hooks turned on for an
    old database do not page anyone about last month. Notifications are
    forgotten ``keep`` seconds after their event (an event found again
    after that is sent again). ``dashboard_url`` adds a link to the saga.
    Give every process that runs a notifier the same hooks.
    """

    def __init__(
        self,
        *,
        callback: Callback | None = None,
        webhook: str | None = None,
        secret: str | bytes | None = None,
        events: Collection[str] = ALL_EVENTS,
        stuck_after: float | None = 300.0,
        paused_after: float | None = 3600.0,
        lock_wait_after: float | None = 60.0,
        retry: HookRetry | None = None,
        timeout: float = 10.0,
        max_age: float = 86_400.0,
        keep: float = 7 * 86_400.0,
        dashboard_url: str | None = None,
    ) -> None:
        if callback is None and webhook is None:
            raise SagaError("hooks need a callback, a webhook URL, or both")
        if callback is not None and not callable(callback):
            raise SagaError(f"hook callback must be callable, got {callback!r}")
        unknown = sorted(str(e) for e in events if str(e) not in ALL_EVENTS)
        if unknown:
            known = ", ".join(sorted(ALL_EVENTS))
            raise SagaError(f"unknown hook event(s) {unknown}: use {known}")
        self.events = frozenset(EventKind(str(e)) for e in events)
        self.stuck_after = _positive("stuck_after", stuck_after)
        self.paused_after = _positive("paused_after", paused_after)
        self.lock_wait_after = _positive("lock_wait_after", lock_wait_after)
        self.timeout = _positive("timeout", timeout) or 10.0
        self.max_age = _positive("max_age", max_age) or 86_400.0
        self.keep = max(self.max_age, _positive("keep", keep) or 0.0)
        self.retry = retry or HookRetry()
        self.dashboard_url = dashboard_url
        self.targets: dict[str, Target] = {}
        if callback is not None:
            self.targets["callback"] = _call(callback)
        if webhook is not None:
            if not secret:
                raise SagaError(
                    "a webhook needs a secret to sign its requests with (secret=...)"
                )
            self.targets["webhook"] = Webhook(webhook, secret, timeout=self.timeout)

    def wants(self, kind: EventKind) -> bool:
        """Whether these hooks take events of ``kind`` (and its threshold is on)."""
        if kind not in self.events:
            return False
        if kind is EventKind.SAGA_STUCK:
            return self.stuck_after is not None or self.paused_after is not None
        if kind is EventKind.LOCK_WAITING:
            return self.lock_wait_after is not None
        return True

    def __repr__(self) -> str:
        return f"Hooks({', '.join(repr(t) for t in self.targets.values())})"


__all__ = ["Callback", "HookRetry", "Hooks"]
