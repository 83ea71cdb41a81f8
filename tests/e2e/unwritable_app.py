"""A saga whose one step takes write access away from the store it runs on,
for the tests of a store that refuses writes mid-run (test_unwritable_store).

    UNWRITABLE_ADMIN_URL=postgresql://postgres@host/db UNWRITABLE_ROLE=role \\
        sagakit --db postgresql://role@host/db recover tests.e2e.unwritable_app:saga

The step connects as the administrator and revokes the role's INSERT,
UPDATE and DELETE on every table, as an operator (or a failover to a
standby) would: the step's own commit is the first write refused. It does
so once (``$UNWRITABLE_ONCE`` marks it done), so a later run goes through.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
from pydantic import BaseModel

from sagakit import Saga, Step


class Ctx(BaseModel):
    n: int = 0


async def revoke_writes(ctx: Ctx) -> int:
    role, once = os.environ["UNWRITABLE_ROLE"], Path(os.environ["UNWRITABLE_ONCE"])
    if once.exists():  # noqa: ASYNC240 - a test marker
        return ctx.n
    once.touch()  # noqa: ASYNC240
    conn = await asyncpg.connect(os.environ["UNWRITABLE_ADMIN_URL"])
    try:
        # the role is the test's own name, quoted as an identifier
        await conn.execute(
            "REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public "
            f'FROM "{role}"'
        )
    finally:
        await conn.close()
    return ctx.n


async def done(ctx: Ctx) -> None:
    """Reached once write access is back."""


saga: Saga[Ctx] = Saga(
    "unwritable", [Step("revoke", revoke_writes), Step("done", done)], context=Ctx
)
