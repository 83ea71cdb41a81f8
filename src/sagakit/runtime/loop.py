"""The event loop that sagakit's commands run on.

Like uvicorn's ``--loop auto``: uvloop when it is installed
(``pip install 'sagakit[fast]'``), asyncio's own loop otherwise.
``SAGAKIT_EVENT_LOOP`` chooses: ``auto`` (the default), ``uvloop`` (fail if
it is missing) or ``asyncio``. A worker or participant on uvloop spends less
time per message in the loop itself (4-8% more remote sagas per second in
``benchmarks/remote_throughput.py``). A brief run (a read-only command: a
few statements) gains nothing from it and would only pay its import, so
``auto`` gives it asyncio's loop.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sagakit.errors import SagaError

LOOP_ENV = "SAGAKIT_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")
T = TypeVar("T")


def loop_factory(
    *, brief: bool = False
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What ``asyncio.Runner`` should build: uvloop's loop, or None for
    asyncio's (``brief``: unless uvloop is asked for by name)."""
    choice = os.environ.get(LOOP_ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise SagaError(f"{LOOP_ENV}={choice!r} is not one of {', '.join(CHOICES)}")
    if choice == "asyncio" or (brief and choice == "auto"):
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise SagaError(
                f"{LOOP_ENV}=uvloop but uvloop is not installed: "
                "pip install 'sagakit[fast]'"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: what :func:`run` would use."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T], *, brief: bool = False) -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_factory` chooses."""
    try:
        factory = loop_factory(brief=brief)
    except SagaError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
