"""pg-saga's log entries (``saga.logger``): what ``start_event_loop`` hands to
its ``log_handler``, and the logger a step gets."""

from __future__ import annotations

import asyncio
import collections
import datetime
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

KEPT = 10_000
"""Entries a stream keeps while nobody reads it (the oldest go first)."""


class LogLevel(Enum):
    TRACE = "TRACE"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


@dataclass
class LogEntry:
    """One log line: what was logged, and the saga it is about."""

    time: datetime.datetime
    log_level: LogLevel
    message: str
    meta: dict[str, Any]
    error: BaseException | None
    source: str | None
    saga_id: int | None
    """pg-saga's row id; sagakit's instances have none (always None)."""
    saga_name: str
    saga_instance: str | None
    saga_step: str | None
    saga_runner: str


class LogStream:
    """An async iterator of entries; ``send`` adds one, ``end`` finishes it
    (readers stop once they have read what came before)."""

    def __init__(self) -> None:
        self._items: collections.deque[LogEntry] = collections.deque(maxlen=KEPT)
        self._ended = False
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def send(self, item: LogEntry) -> None:
        with self._lock:
            self._items.append(item)
        self._wake()

    def end(self) -> None:
        self._ended = True
        self._wake()

    @property
    def ended(self) -> bool:
        return self._ended

    def _wake(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            if loop.is_closed():
                continue
            try:
                if loop is asyncio.get_running_loop():
                    event.set()
                    continue
            except RuntimeError:
                pass
            loop.call_soon_threadsafe(event.set)

    def __aiter__(self) -> AsyncIterator[LogEntry]:
        return self

    async def __anext__(self) -> LogEntry:
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                if self._ended:
                    raise StopAsyncIteration
                event = asyncio.Event()
                self._waiters.append((asyncio.get_running_loop(), event))
            await event.wait()


class Logger:
    """What a step gets as ``logger``: ``log_trace``, ``log_info``,
    ``log_warn`` and ``log_error`` write entries to ``logstream``."""

    def __init__(self, name: str, runner: str, logstream: LogStream | None = None):
        self.logstream = logstream or LogStream()
        self._context: dict[str, Any] = {
            "source": None,
            "saga_id": None,
            "saga_name": name,
            "saga_instance": None,
            "saga_step": None,
            "saga_runner": runner,
        }

    def with_context(
        self,
        saga_id: int | None,
        saga_instance: str | None,
        saga_step: str | None,
        source: str | None = None,
    ) -> Logger:
        """A logger writing to the same stream, about this saga and step."""
        child = Logger(
            self._context["saga_name"], self._context["saga_runner"], self.logstream
        )
        child._context.update(
            source=source or saga_step,
            saga_id=saga_id,
            saga_instance=saga_instance,
            saga_step=saga_step,
        )
        return child

    def _log(
        self,
        level: LogLevel,
        message: str,
        error: BaseException | None,
        source: str | None,
        meta: dict[str, Any],
    ) -> None:
        context = {**self._context, "source": source or self._context["source"]}
        self.logstream.send(
            LogEntry(
                time=datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
                log_level=level,
                message=message,
                meta=meta,
                error=error,
                **context,
            )
        )

    def log_trace(
        self,
        message: str,
        error: BaseException | None = None,
        source: str | None = None,
        **meta: Any,
    ) -> None:
        self._log(LogLevel.TRACE, message, error, source, meta)

    def log_info(
        self,
        message: str,
        error: BaseException | None = None,
        source: str | None = None,
        **meta: Any,
    ) -> None:
        self._log(LogLevel.INFO, message, error, source, meta)

    def log_warn(
        self,
        message: str,
        error: BaseException | None = None,
        source: str | None = None,
        **meta: Any,
    ) -> None:
        self._log(LogLevel.WARN, message, error, source, meta)

    def log_error(
        self,
        error: BaseException,
        message: str | None = None,
        source: str | None = None,
        **meta: Any,
    ) -> None:
        self._log(LogLevel.ERROR, message or repr(error), error, source, meta)


__all__ = ["LogEntry", "LogLevel", "LogStream", "Logger"]
