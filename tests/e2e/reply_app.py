"""Services for the end-to-end tests of replies routed to their saga's owner.

``routed`` has two remote steps, both at the ``desk`` service, which
``sagakit participant tests.e2e.reply_app:desk`` runs; ``sagakit worker
tests.e2e.reply_app`` claims sagas of it. Queue names start with
``$REPLY_APP_PREFIX`` so that parallel runs do not meet. For each command it
handles, the desk appends ``<saga_id> <step> <pid>`` to the file
``$REPLY_APP_EFFECTS``; while the file ``$REPLY_APP_GATE`` (if named) does
not exist, it waits before replying to a ``second`` step.

``python tests/e2e/reply_app.py DB AMQP REPLY_QUEUE COUNT DIR`` is an
orchestrator process of its own: serving on ``REPLY_QUEUE``, it waits for
the file ``DIR/go``, runs ``COUNT`` sagas at once with ``Orchestrator.run``,
writes ``<saga_id> <status>`` lines to ``DIR/<pid>.out``, and keeps serving
until the file ``DIR/stop`` exists.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SQLiteStore, Step
from sagakit.definition import Remote
from sagakit.messaging import Envelope
from sagakit.participant import Participant

PREFIX_VAR = "REPLY_APP_PREFIX"
EFFECTS_VAR = "REPLY_APP_EFFECTS"
GATE_VAR = "REPLY_APP_GATE"


class Job(BaseModel):
    n: int = 0


def job(ctx: Job) -> dict[str, int]:
    return {"n": ctx.n}


def routed_saga(prefix: str) -> Saga[Job]:
    desk = f"{prefix}desk"
    return Saga(
        "routed",
        [
            Step("first", Remote("desk.first", job, queue=desk), timeout=120),
            Step("second", Remote("desk.second", job, queue=desk), timeout=120),
        ],
        context=Job,
    )


_PREFIX = os.environ.get(PREFIX_VAR, "")
routed = routed_saga(_PREFIX)
desk = Participant("desk", queue=f"{_PREFIX}desk")


def _record(message: Envelope) -> None:
    with Path(os.environ[EFFECTS_VAR]).open("a") as effects:
        effects.write(f"{message.saga_id} {message.step} {os.getpid()}\n")


async def _until(path: Path) -> None:
    while not path.exists():  # noqa: ASYNC110, ASYNC240 - no event for a file; a stat
        await asyncio.sleep(0.02)


@desk.handler("desk.first")
async def first(cmd: dict[str, int], message: Envelope) -> dict[str, int]:
    _record(message)
    return {"pid": os.getpid()}


@desk.handler("desk.second")
async def second(cmd: dict[str, int], message: Envelope) -> dict[str, int]:
    _record(message)
    gate = os.environ.get(GATE_VAR)
    if gate:
        await _until(Path(gate))
    return {"pid": os.getpid()}


async def orchestrate(
    db: str, amqp: str, reply_queue: str, count: int, where: Path
) -> None:
    from sagakit.adapters.transport.rabbitmq import RabbitTransport  # noqa: PLC0415

    store = SQLiteStore(db)
    transport = await RabbitTransport.connect(amqp)
    orchestrator = Orchestrator(
        store, [routed], transport=transport, reply_queue=reply_queue, lease=30.0
    )
    try:
        async with orchestrator.serving():
            print(f"serving as {orchestrator.worker_id}", flush=True)
            await _until(where / "go")
            ran = await asyncio.gather(
                *(orchestrator.run(routed, Job(n=n)) for n in range(count))
            )
            lines = [f"{r.saga_id} {r.status.value}\n" for r in ran]
            (where / f"{os.getpid()}.out").write_text("".join(lines))
            await _until(where / "stop")
    finally:
        await orchestrator.close()
        await transport.close()


if __name__ == "__main__":
    db, amqp, reply_queue, count, where = sys.argv[1:6]
    asyncio.run(orchestrate(db, amqp, reply_queue, int(count), Path(where)))
