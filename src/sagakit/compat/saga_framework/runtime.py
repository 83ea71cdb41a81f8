"""How saga-framework sagas run on sagakit: one short orchestrator session per call.

``execute()`` and every ``on_async_step_success``/``failure`` (what the
registered ``{task}.response.success|failure`` Celery tasks call) open the
saga store, apply one thing through a sagakit
:class:`~sagakit.Orchestrator` (a start, or one reply), let the local steps
that follow run, and close. Between calls the saga's progress is in the
store, which is how a duplicate or late reply is recognised and dropped.

Where the state lives: the class's ``store_url``, else
``$SAGAKIT_DATABASE_URL``, else a store kept in this process's memory (the
default: nothing to configure, no file written, as saga-framework required
none). Give processes that share sagas (the web process calling
``execute()`` and the Celery worker handling the responses) one database.

Each saga object's instances are named ``<saga name>:<saga id>``; calling
``execute()`` again for an id runs the saga again (as saga-framework does) as
a new instance ``<saga name>:<saga id>~2`` (``~3``...). Replies go to the
newest.

Nothing is published by sagakit: an async step's ``action`` sends its Celery
task itself (``send_message_to_other_service``), so the engine's command
for it goes to :class:`SilentTransport`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sagakit.adapters.store import ENV_VAR, open_store_async
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.transport.base import BaseSubscription, BaseTransport
from sagakit.compat.sync import call_sync
from sagakit.definition.saga import Saga
from sagakit.engine.state import SagaStatus
from sagakit.errors import SagaAlreadyExists, SagaNotFound
from sagakit.messaging.envelope import Envelope
from sagakit.observability.observer import Observer
from sagakit.ports.store import HistoryEntry, SagaRecord, SagaStore
from sagakit.ports.transport import DeadLetter, Handler
from sagakit.runtime.orchestrator import Orchestrator

logger = logging.getLogger(__name__)

T = TypeVar("T")

RERUN = "~"
"""Separates a saga id from the number of a later run of it."""

KEPT_IN_MEMORY = 10_000
"""Finished instances the in-process default store keeps (the oldest go)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A step handler's reply to apply: ``hooks`` runs ``on_success`` or
    ``on_failure`` and ``compensate`` first (False: ``compensate`` itself
    asked to fail the step)."""

    step: str
    ok: bool
    payload: Any
    hooks: bool = True


class Target(Protocol):
    """The saga object's flow, which a session reports to."""

    def step_finished(self, entry: HistoryEntry) -> None: ...

    def saga_finished(self, status: SagaStatus, failed_step: str | None) -> None: ...

    async def apply(self, session: Session, reply: Reply) -> None: ...


class _Hooks(Observer):
    """Hands the engine's committed step outcomes and endings to the saga
    object, after each commit and before anything that follows runs."""

    def __init__(self, target: Target, finished: Callable[[str], None]) -> None:
        self.target = target
        self.finished = finished

    def step_finished(self, saga: str, entry: HistoryEntry) -> None:
        self.target.step_finished(entry)

    def saga_finished(
        self,
        saga: str,
        saga_id: str,
        status: str,
        failed_step: str | None,
        trace: Mapping[str, str] | None,
    ) -> None:
        self.finished(saga_id)
        self.target.saga_finished(SagaStatus(status), failed_step)


class _NoSubscription(BaseSubscription):
    async def _stop(self) -> None:
        return None


class SilentTransport(BaseTransport):
    """The transport port, publishing nothing: an async step's action sends
    its Celery task itself, and replies arrive as Celery tasks."""

    name = "saga-framework"

    async def publish(self, queue: str, message: Envelope) -> None:
        return None

    async def publish_raw(self, queue: str, body: bytes) -> None:
        return None

    async def _subscribe(
        self, queue: str, handler: Handler, prefetch: int, max_deliveries: int
    ) -> BaseSubscription:
        return _NoSubscription(self)

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return []

    async def replay_dead_letters(self, queue: str, limit: int = 100) -> int:
        return 0


class _ProcessStore:
    """The default store: one per process, keeping the newest finished
    instances (:data:`KEPT_IN_MEMORY`)."""

    def __init__(self) -> None:
        self.store = InMemoryStore()
        self.finished: collections.deque[str] = collections.deque()
        self.lock = threading.Lock()

    def ended(self, saga_id: str) -> None:
        with self.lock:
            self.finished.append(saga_id)
            old = []
            while len(self.finished) > KEPT_IN_MEMORY:
                old.append(self.finished.popleft())
        if old:
            self.store.forget(old)


_process_store = _ProcessStore()


# -- replies that arrive while this process drives the same saga -------------

_active: dict[str, collections.deque[Reply]] = {}
_active_lock = threading.Lock()


def defer(base: str, work: Reply) -> bool:
    """Queue ``work`` for the session that drives ``base`` in this process
    right now (a reply sent back from inside one of its steps, as a fake or
    eager Celery app does); False if none does."""
    with _active_lock:
        queue = _active.get(base)
        if queue is None:
            return False
        queue.append(work)
        return True


def _claim(base: str) -> bool:
    with _active_lock:
        if base in _active:
            return False
        _active[base] = collections.deque()
        return True


def _next_deferred(base: str) -> Reply | None:
    """The next queued work, or None (then ``base`` is no longer driven here)."""
    with _active_lock:
        queue = _active[base]
        if queue:
            return queue.popleft()
        del _active[base]
        return None


# -- sessions --------------------------------------------------------------


class Session:
    """One call's access to a saga: the store and an orchestrator reporting
    to the saga object. ``base`` is ``<saga name>:<saga id>``."""

    def __init__(
        self,
        store: SagaStore,
        orchestrator: Orchestrator,
        definition: Saga[Any],
        base: str,
    ) -> None:
        self.store = store
        self.orchestrator = orchestrator
        self.definition = definition
        self.base = base

    def run_id(self, number: int) -> str:
        """The instance id of run ``number`` (1: the first) of this saga id."""
        return self.base if number == 1 else f"{self.base}{RERUN}{number}"

    async def _probe(self) -> tuple[SagaRecord | None, int]:
        """The newest run (None if there is none) and the number of the next."""
        found, number = None, 1
        while True:
            try:
                found = await self.store.get(self.run_id(number))
            except SagaNotFound:
                return found, number
            number += 1

    async def latest(self) -> SagaRecord | None:
        """The newest run of this saga id, or None."""
        return (await self._probe())[0]

    async def start(self) -> str:
        """Start a new run of this saga id; returns its instance id."""
        while True:
            saga_id = self.run_id((await self._probe())[1])
            try:
                await self.orchestrator.start(self.definition, None, saga_id=saga_id)
            except SagaAlreadyExists:
                continue  # another process started a run meanwhile
            return saga_id

    async def reply(self, message: Envelope) -> None:
        await self.orchestrator.handle_reply(message)

    async def settle(self) -> None:
        await self.orchestrator.settle()
        relay = self.orchestrator.relay
        if relay is not None:
            while await relay.run_once():
                pass


@contextlib.asynccontextmanager
async def _store(store_url: str | None) -> AsyncIterator[tuple[SagaStore, bool]]:
    """The store a saga class uses, and whether it is the process's own."""
    url = store_url or os.environ.get(ENV_VAR)
    if url is None:
        yield _process_store.store, True
        return
    store = await open_store_async(url)
    try:
        yield store, False
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def session(
    store_url: str | None, definition: Saga[Any], target: Target, base: str
) -> AsyncIterator[Session]:
    """A session on ``base``: on the way out, the local steps that follow run
    and the replies deferred meanwhile (:func:`defer`) are applied."""
    async with _store(store_url) as (store, shared):
        ended = _process_store.ended if shared else _ignore
        orchestrator = Orchestrator(
            store,
            [definition],
            transport=SilentTransport(),
            reply_queue="saga_framework.responses",
            observer=_Hooks(target, ended),
        )
        current = Session(store, orchestrator, definition, base)
        owner = _claim(base)
        orchestrator.intake.running = True  # remote steps, without the relay loop
        try:
            yield current
            await current.settle()
            while owner and (work := _next_deferred(base)) is not None:
                await target.apply(current, work)
                await current.settle()
            owner = False
        finally:
            if owner:
                with _active_lock:
                    _active.pop(base, None)
            orchestrator.intake.running = False
            await orchestrator.stop_driving()


def _ignore(saga_id: str) -> None:
    return None


__all__ = ["Reply", "Session", "SilentTransport", "call_sync", "defer", "session"]
