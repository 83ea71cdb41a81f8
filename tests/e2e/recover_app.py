"""A saga for the ``sagakit recover`` tests: its one step waits
``$RECOVER_STEP_SECONDS`` (default 0).

    RECOVER_STEP_SECONDS=0.3 sagakit --db DB recover tests.e2e.recover_app:saga
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

from sagakit import Saga, Step


class Ctx(BaseModel):
    n: int = 0


async def step(ctx: Ctx) -> int:
    await asyncio.sleep(float(os.environ.get("RECOVER_STEP_SECONDS", "0")))
    return ctx.n


saga: Saga[Ctx] = Saga("recover_me", [Step("step", step)], context=Ctx)
