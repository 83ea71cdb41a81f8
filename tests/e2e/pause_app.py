"""Sagas of the pause tests with real processes (``test_pause_processes.py``).

Usage: OWNED_EFFECTS=EFFECTS sagakit --db DB worker tests.e2e.pause_app

Each step and compensation writes ``<saga> <step> begin|end <pid>`` lines to
EFFECTS, as ``owned_app.py``'s do; ``two`` (in ``forward``) and ``undo-two``
(in ``rollback``) wait, once begun, until the file :func:`gate` names exists.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from sagakit import RetryPolicy, Saga, Step
from tests.e2e.owned_app import effect

EFFECTS = Path(os.environ.get("OWNED_EFFECTS", "effects.txt"))


def gate(effects: Path, name: str) -> Path:
    """The file that lets the gated step ``name`` end."""
    return effects.with_name(f"{effects.name}.{name}.open")


def step(
    saga: str, name: str, *, gated: bool = False
) -> Callable[[object], Awaitable[str]]:
    async def run(ctx: object) -> str:
        effect(EFFECTS, f"{saga} {name} begin")
        while gated and not gate(EFFECTS, name).exists():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        effect(EFFECTS, f"{saga} {name} end")
        return name

    return run


def fail(ctx: object) -> None:
    effect(EFFECTS, "rollback three begin")
    raise OSError("three is down")


forward = Saga(
    "forward",
    [
        Step("one", step("forward", "one")),
        Step("two", step("forward", "two", gated=True)),
        Step("three", step("forward", "three")),
    ],
)

rollback = Saga(
    "rollback",
    [
        Step("one", step("rollback", "one"), compensate=step("rollback", "undo-one")),
        Step(
            "two",
            step("rollback", "two"),
            compensate=step("rollback", "undo-two", gated=True),
        ),
        Step("three", fail, retry=RetryPolicy(attempts=1)),
    ],
)
