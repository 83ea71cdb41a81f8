"""The participants and the saga of ``remote_throughput.py``'s sagakit side.

Three services, ``a``, ``b`` and ``c``, each a :class:`Participant` with one
trivial handler that returns a small dict. ``remote_throughput.py`` runs each
in a process of its own::

    python -m sagakit.cli.main --db a.db participant remote_services:a \\
        --transport amqp://guest:guest@127.0.0.1:5672/

Queue names carry ``$SAGAKIT_BENCH_TAG`` so that runs sharing a broker do not
mix; the benchmark sets it for the participants and passes the same tag to
:func:`remote_saga`.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from sagakit import Saga, Step
from sagakit.definition import Remote
from sagakit.participant import Participant

TAG_ENV = "SAGAKIT_BENCH_TAG"
SERVICES = ("a", "b", "c")
REPLY_TIMEOUT = 30.0  # seconds; never reached in a healthy run


def queue_of(tag: str, service: str) -> str:
    """The logical queue of ``service`` (the broker adds the ``sagakit.`` prefix)."""
    return f"bench-{tag}-{service}"


def reply_queue_of(tag: str) -> str:
    return f"bench-{tag}-replies"


class Order(BaseModel):
    order_id: int = 1


def order_payload(ctx: Order) -> dict[str, int]:
    return {"order_id": ctx.order_id}


def remote_saga(tag: str) -> Saga[Order]:
    """Three remote steps, one per service, run in order."""
    return Saga(
        "bench_remote",
        [
            Step(
                f"step_{service}",
                Remote(
                    f"{service}.reserve",
                    order_payload,
                    queue=queue_of(tag, service),
                ),
                timeout=REPLY_TIMEOUT,
            )
            for service in SERVICES
        ],
        context=Order,
    )


def _participant(service: str) -> Participant:
    tag = os.environ.get(TAG_ENV, "local")
    participant = Participant(service, queue=queue_of(tag, service))

    @participant.handler(f"{service}.reserve")
    async def reserve(cmd: dict[str, Any]) -> dict[str, Any]:
        return {"service": service, "order_id": cmd.get("order_id"), "ok": True}

    return participant


a = _participant("a")
b = _participant("b")
c = _participant("c")
