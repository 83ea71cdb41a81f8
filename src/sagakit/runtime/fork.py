"""Forking a saga that ended into a new instance that re-runs it from a step.

The steps before that step (those it depends on, directly or not) keep the
results the source recorded; every other step runs again, in a worker, on
the source's context or an edited one (validated against the saga's
context model). The fork owns the effects it keeps: if it rolls back, it
compensates them. So the source hands them over once: a saga is forked at
most once (fork the fork to try again), and a forked saga takes no other
operator action.

Two commits, safe for a crash in between:

1. the source gets a ``fork_requested`` audit line (who, why, the step, the
   fork's id and, if edited, its context) at its next version, so of two
   forks racing, one is refused;
2. the fork is created unowned (a worker claims it); its history starts
   with a ``forked_from`` line naming the source, the step, who and why.

A crash between the two leaves the source naming a fork that does not
exist: forking the source again creates that fork as recorded (and says
so) instead of another one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from sagakit.definition.saga import Saga
from sagakit.engine.repair import fork_state
from sagakit.engine.results import first_error
from sagakit.errors import ConcurrencyError, SagaAlreadyExists, SagaNotFound, StateError
from sagakit.ports.store import HistoryEntry, SagaRecord, saga_line

if TYPE_CHECKING:
    from sagakit.runtime.client import SagaClient

logger = logging.getLogger(__name__)

REQUESTED = "fork_requested"
"""The outcome of the source's audit line."""
FORKED_FROM = "forked_from"
"""The outcome of the fork's first line after ``started``."""
ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ForkOrder:
    """What an operator asks of a fork: re-run from ``step``, on the
    source's context or ``context`` (the whole of it), as ``new_id`` (a
    random id by default); ``by`` and ``reason`` go into both histories."""

    step: str
    by: str
    reason: str
    context: Mapping[str, Any] | None = None
    new_id: str | None = None


@dataclass(frozen=True, slots=True)
class Forked:
    """What :func:`fork` did: ``saga_id`` is the new instance, ``source`` the
    saga it re-runs from ``step``. ``finished`` is set when a fork that a
    crash interrupted was made instead, as recorded then (by whom, why:
    ``line``)."""

    saga_id: str
    source: str
    step: str
    finished: bool = False
    line: HistoryEntry | None = None


def fork_line(history: Sequence[HistoryEntry]) -> HistoryEntry | None:
    """The source's ``fork_requested`` line, if it was forked."""
    for entry in history:
        if entry.kind == "saga" and entry.outcome == REQUESTED:
            return entry
    return None


def forked_into(history: Sequence[HistoryEntry]) -> str | None:
    """The id of the fork a saga was forked into, if any."""
    line = fork_line(history)
    return None if line is None else str(line.result["fork"])


async def fork(client: SagaClient, saga_id: str, order: ForkOrder) -> Forked:
    """Fork ``saga_id`` (it ended) as ``order`` says (see the module);
    ``StateError`` where that would break an invariant or the context's
    model refuses the context."""
    step, new_id, context = order.step, order.new_id, order.context
    for attempt in range(1, ATTEMPTS + 1):
        record = await client.store.get(saga_id)
        earlier = fork_line(await client.store.history(saga_id))
        if earlier is not None:
            return await _finish(client, record, earlier)
        saga = client.driver.definition(record)
        fork_id = new_id or client.new_id()
        fork_state(saga, record.state, step, fork_id)  # refuse before anything
        data = _context(saga, record, context)
        if new_id is not None and await _exists(client, new_id):
            raise StateError(
                f"saga {saga_id}: the fork's id {new_id!r} is taken by another saga"
            )
        said: dict[str, Any] = {"by": order.by, "reason": order.reason, "step": step}
        said["fork"] = fork_id
        if context is not None:
            said["context"] = data
        said["changed"] = [f"forked into {fork_id} from step {step}"]
        line = saga_line(saga_id, REQUESTED, client.clock.now(), said)
        try:  # the same record at its next version, with the line
            await client.store.save(
                replace(
                    record, version=record.version + 1, updated_at=line.finished_at
                ),
                record.version,
                [line],
            )
        except ConcurrencyError:
            if attempt == ATTEMPTS:
                raise
            continue
        return await _create(client, saga, record, line)
    raise AssertionError("unreachable")  # pragma: no cover


async def _finish(client: SagaClient, record: SagaRecord, line: HistoryEntry) -> Forked:
    """The source was forked already: refused, unless a crash interrupted
    that fork before it was created (then it is, as recorded)."""
    fork_id = str(line.result["fork"])
    if await _exists(client, fork_id):
        raise StateError(
            f"saga {record.saga_id} was forked into {fork_id} already: fork "
            f"{fork_id} instead"
        )
    saga = client.driver.definition(record)
    done = await _create(client, saga, record, line)
    return Forked(done.saga_id, done.source, done.step, finished=True, line=line)


async def _create(
    client: SagaClient, saga: Saga[Any], record: SagaRecord, line: HistoryEntry
) -> Forked:
    said = line.result
    fork_id, step = str(said["fork"]), str(said["step"])
    state = fork_state(saga, record.state, step, fork_id)
    data = said.get("context", record.context)
    origin = {"saga_id": record.saga_id, "step": step}
    origin |= {k: said[k] for k in ("by", "reason") if k in said}
    forked = saga_line(fork_id, FORKED_FROM, client.clock.now(), origin)
    with suppress(SagaAlreadyExists):  # made by a retry of this fork meanwhile
        await client.begin(saga, data, {"saga_id": fork_id}, fork=state, lines=[forked])
    logger.info(
        "saga forked",
        extra={
            "action": "saga_forked",
            "saga_id": record.saga_id,
            "fork": fork_id,
            "step": step,
            "by": said.get("by"),
        },
    )
    return Forked(fork_id, record.saga_id, step)


def _context(
    saga: Saga[Any], record: SagaRecord, context: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The fork's context as JSON: ``context`` validated by the saga's
    model, or the source's."""
    if context is None:
        return record.context
    try:
        model = saga.context.model_validate(dict(context))
    except ValidationError as exc:
        raise StateError(
            f"saga {record.saga_id}: the edited context does not fit "
            f"{saga.context.__name__}: {first_error(exc, 'context')}"
        ) from None
    data: dict[str, Any] = model.model_dump(mode="json")
    return data


async def _exists(client: SagaClient, saga_id: str) -> bool:
    try:
        await client.store.get(saga_id)
    except SagaNotFound:
        return False
    return True
