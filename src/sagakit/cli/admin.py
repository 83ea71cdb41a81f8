"""Admin commands: ``list`` (with ``--older-than``), ``retry``, ``resume``,
``cancel``, ``pause`` and ``unpause`` (``dlq list|replay`` are in
:mod:`sagakit.cli.dead_letters`, the actions on one compensation and
``fork`` in :mod:`sagakit.cli.repair`).

Thin: parse, call :mod:`sagakit.admin`, render. ``retry``/``resume``/``cancel``
commit the request and hand the saga over: a running ``sagakit worker``, or
``sagakit recover MODULE``, runs the steps or compensations; the command
says whether a live worker drives the saga, or how to start one. Every
action needs who asks (``--as NAME`` or ``$SAGAKIT_OPERATOR``) and why
(``--reason TEXT``), both kept in the saga's history. Refusals (a
:class:`~sagakit.errors.StateError` such as retrying a saga that succeeded)
and bad input print one ``error: ...`` line and exit with status 2.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from sagakit.cli import dead_letters
from sagakit.cli.common import (
    LimitOption,
    count_or_fail,
    db_of,
    err,
    fail,
    sagas_or_fail,
    with_store,
)
from sagakit.engine.status import SagaStatus
from sagakit.views.input import BadInput

if TYPE_CHECKING:  # a command imports what it runs when it runs
    from rich.console import Console

    from sagakit import admin
    from sagakit.ports.store import SagaRecord, SagaStore

T = TypeVar("T")

BULK_LIMIT = 100
STATUSES = tuple(s.value for s in SagaStatus)
WAITING = "waiting"
LIST_STATUSES = (*STATUSES, WAITING)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_AGE = 36500 * 86400.0
"""Longest ``--older-than``: a hundred years."""
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")

SagasOption = Annotated[
    str,
    typer.Option(
        "--sagas",
        metavar="MODULE[:ATTR]",
        help="Where the saga definitions live: myapp.sagas or myapp.sagas:trip",
    ),
]
ReasonOption = Annotated[
    str | None,
    typer.Option(
        "--reason", metavar="TEXT", help="Why (needed): kept in the saga's history."
    ),
]
OPERATOR_ENV = "SAGAKIT_OPERATOR"
OperatorOption = Annotated[
    str | None,
    typer.Option(
        "--as",
        metavar="NAME",
        help=f"Who you are (needed, or ${OPERATOR_ENV}): kept in the saga's history.",
    ),
]


def parse_duration(text: str) -> float:
    """``30s``, ``10m``, ``2h``, ``1d`` (or ``1h30m``) -> seconds."""
    value = text.strip().lower()
    parts = _DURATION.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise BadInput(
            f"invalid duration {text!r}: use a number and a unit, "
            "e.g. 30s, 10m, 2h or 1d"
        )
    seconds = sum(float(n) * UNITS[u] for n, u in parts)
    if not seconds <= MAX_AGE:  # inf too
        raise BadInput(f"invalid duration {text[:40]!r}: at most 36500d (100 years)")
    return seconds


def operator_name() -> str:
    """Who runs a command that records it without asking (``migrate-instances``):
    ``$SAGAKIT_OPERATOR``, else the login name, as ``user@cli``."""
    import getpass

    named = os.environ.get(OPERATOR_ENV, "").strip()
    if named:
        return named
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        user = "unknown"
    return f"{user}@cli"


def who_and_why(name: str | None, reason: str | None) -> tuple[str, str]:
    """The operator (``--as``, else ``$SAGAKIT_OPERATOR``) and the reason
    of an action; exit 2 with one line if either is missing."""
    who = (name or os.environ.get(OPERATOR_ENV) or "").strip()
    if not who:
        fail(
            f"say who you are: --as NAME or ${OPERATOR_ENV} (it is kept in the "
            "saga's history)"
        )
    why = (reason or "").strip()
    if not why:
        fail("say why: --reason TEXT (it is kept in the saga's history)")
    return who, why


def _with_store(
    ctx: typer.Context,
    work: Callable[[SagaStore], Awaitable[T]],
    *,
    read_only: bool = False,
) -> T:
    """:func:`sagakit.cli.common.with_store` on the store of ``--db``."""
    return with_store(db_of(ctx), work, read_only=read_only)


def handed_over(
    out: Console, action: str, record: SagaRecord, target: str, owner: str | None
) -> None:
    """What an action did, and who runs what it started: the live worker
    that drives the saga, or how to start one."""
    from rich.text import Text

    from sagakit.cli import render
    from sagakit.views.audit import next_step

    line = Text()
    line.append(f"{action} committed for {record.saga_name} {record.saga_id}: ")
    line.append_text(render.styled(record.status.value))
    out.print(line, soft_wrap=True)
    said = next_step(record.status.terminal, owner, target)
    out.print(said, highlight=False, soft_wrap=True)


def perform(
    ctx: typer.Context,
    out: Console,
    command: str,
    call_name: str,
    *args: str,
    sagas: str,
    operator: str | None,
    reason: str | None,
) -> None:
    """One action on one saga: ``sagakit.admin.<call_name>(store,
    definitions, *args, by=..., reason=...)`` on the store of ``--db``, then
    what it did and who runs what it started (exit 2 with one line for a
    missing name or reason, or a refusal)."""
    from sagakit import admin

    by, why = who_and_why(operator, reason)
    definitions = sagas_or_fail(sagas)
    call: Callable[..., Awaitable[SagaRecord]] = getattr(admin, call_name)

    async def both(store: SagaStore) -> tuple[SagaRecord, str | None]:
        record = await call(store, definitions, *args, by=by, reason=why)
        return record, await admin.driver_of(store, record.saga_id)

    record, owner = _with_store(ctx, both)
    handed_over(out, command, record, sagas, owner)


def register(app: typer.Typer, out: Console) -> None:
    """Attach the admin commands, ``list`` among them."""
    _add_list(app, out)
    _add_retry(app, out)
    _add_resume_cancel(app, out)
    for action, (one, every, help_text) in _PAUSING.items():
        _add_pausing(
            app, out, action, one_name=one, every_name=every, help_text=help_text
        )
    dead_letters.register(app, out)


def _add_list(app: typer.Typer, out: Console) -> None:
    @app.command("list")
    def list_sagas(
        ctx: typer.Context,
        status: Annotated[
            str | None,
            typer.Option(
                "--status",
                metavar="STATUS",
                help=f"Only this status: {', '.join(LIST_STATUSES)} (waiting: "
                "unfinished, its definition version not registered where it "
                "was looked at)",
            ),
        ] = None,
        saga: Annotated[
            str | None, typer.Option("--saga", metavar="NAME", help="Only this saga.")
        ] = None,
        older_than: Annotated[
            str | None,
            typer.Option(
                "--older-than",
                metavar="AGE",
                help="Only sagas created longer ago than this: 30s, 10m, 2h, 1d.",
            ),
        ] = None,
        limit: LimitOption = 50,
    ) -> None:
        """List sagas, newest first."""
        from sagakit import admin
        from sagakit.cli import table

        wanted: SagaStatus | None = None
        waiting = status is not None and status.lower() == WAITING
        if status is not None and not waiting:
            try:
                wanted = SagaStatus(status.lower())
            except ValueError:
                known = ", ".join(LIST_STATUSES)
                fail(f"invalid --status {status!r}: use one of {known}")
        count_or_fail("--limit", limit)
        age: float | None = None
        if older_than is not None:
            try:
                age = parse_duration(older_than)
            except BadInput as exc:
                fail(f"--older-than: {exc}")

        async def listing(store: SagaStore) -> tuple[list[SagaRecord], str | None]:
            found = await admin.list_sagas(
                store,
                status=wanted,
                saga=saga,
                older_than=age,
                limit=limit + 1,  # one more: are there more than shown?
                waiting=waiting,
            )
            if len(found) <= limit:
                return found, None
            if age is not None or waiting:  # no count kept of these
                return found[:limit], f"more than {limit}"
            counts = await store.count_by_status(saga)
            total = counts.get(wanted, 0) if wanted else sum(counts.values())
            return found[:limit], str(max(total, len(found)))

        records, matching = _with_store(ctx, listing, read_only=True)
        table.show(table.sagas(records, time.time(), matching), out)


def _add_retry(app: typer.Typer, out: Console) -> None:
    @app.command()
    def retry(
        ctx: typer.Context,
        saga_id: Annotated[
            str | None,
            typer.Argument(
                metavar="ID", help="Saga id or unique prefix (or --all-failed)."
            ),
        ] = None,
        *,
        sagas: SagasOption,
        all_failed: Annotated[
            bool, typer.Option("--all-failed", help="Retry every failed saga.")
        ] = False,
        saga: Annotated[
            str | None,
            typer.Option("--saga", metavar="NAME", help="With --all-failed: only it."),
        ] = None,
        limit: Annotated[
            int | None,
            typer.Option(
                "--limit",
                metavar="N",
                help="With --all-failed: at most this many.  [default: 100]",
                show_default=False,
            ),
        ] = None,
        reason: ReasonOption = None,
        operator: OperatorOption = None,
    ) -> None:
        """Run the failed steps of a failed saga again (after fixing the cause)."""
        from sagakit import admin

        if (saga_id is None) == (not all_failed):
            fail("give one saga ID, or --all-failed (not both)")
        if not all_failed and (saga is not None or limit is not None):
            fail("--saga and --limit go with --all-failed")
        most = BULK_LIMIT if limit is None else limit
        count_or_fail("--limit", most)
        if saga_id is not None:
            opts: dict[str, Any] = {"operator": operator, "reason": reason}
            perform(ctx, out, "retry", "retry", saga_id, sagas=sagas, **opts)
            return
        by, why = who_and_why(operator, reason)
        definitions = sagas_or_fail(sagas)

        from rich.progress import Progress

        with Progress(console=out, transient=True) as bar:
            task = bar.add_task("retrying failed sagas", total=None)

            def step(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = _with_store(
                ctx,
                lambda store: admin.retry_failed(
                    store,
                    definitions,
                    saga=saga,
                    limit=most,
                    by=by,
                    reason=why,
                    progress=step,
                ),
            )
        out.print(f"retried {len(result.retried)} failed saga(s)", highlight=False)
        for saga_ref in result.retried:
            out.print(f"  {saga_ref}", highlight=False)
        for saga_ref, why in result.refused.items():
            err.print(f"skipped {saga_ref}: {why}", markup=False, highlight=False)
        if result.retried:
            out.print(
                f"a running worker picks them up, or run: sagakit recover {sagas}",
                highlight=False,
                soft_wrap=True,
            )


_HANDOVERS = {  # the sagakit.admin function, by command
    "resume": (
        "resume",
        "Retry the failed compensation of a compensation_failed saga and go on\n"
        "rolling back.",
    ),
    "cancel": ("cancel", "Stop a running saga and compensate what it completed."),
}


def _add_resume_cancel(app: typer.Typer, out: Console) -> None:
    for action, (request, help_text) in _HANDOVERS.items():
        _add_handover(app, out, action, request, help_text)


def _add_handover(
    app: typer.Typer, out: Console, action: str, request_name: str, help_text: str
) -> None:
    """``resume`` or ``cancel``: one saga, handed over to a worker."""

    @app.command(action, help=help_text)
    def handover(
        ctx: typer.Context,
        saga_id: Annotated[
            str, typer.Argument(metavar="ID", help="Saga id or prefix.")
        ],
        *,
        sagas: SagasOption,
        reason: ReasonOption = None,
        operator: OperatorOption = None,
    ) -> None:
        opts: dict[str, Any] = {"operator": operator, "reason": reason}
        perform(ctx, out, action, request_name, saga_id, sagas=sagas, **opts)


_PAUSING = {  # the sagakit.admin functions for one saga and for all, by command
    "pause": (
        "pause",
        "pause_all",
        "Start no new step of a running or compensating saga (steps in flight\n"
        "finish and are recorded) until unpause.",
    ),
    "unpause": (
        "unpause",
        "unpause_all",
        "Let a paused saga go on where it stopped.",
    ),
}


def _add_pausing(
    app: typer.Typer,
    out: Console,
    action: str,
    *,
    one_name: str,
    every_name: str,
    help_text: str,
) -> None:
    """``pause`` or ``unpause``: one saga, or every instance of a saga name."""

    @app.command(action, help=help_text)
    def pausing(
        ctx: typer.Context,
        saga_id: Annotated[
            str | None,
            typer.Argument(metavar="ID", help="Saga id or unique prefix (or --saga)."),
        ] = None,
        *,
        sagas: SagasOption,
        saga: Annotated[
            str | None,
            typer.Option(
                "--saga", metavar="NAME", help="Every unfinished instance of it."
            ),
        ] = None,
        version: Annotated[
            int | None,
            typer.Option(
                "--version", metavar="N", help="With --saga: only definition vN."
            ),
        ] = None,
        reason: ReasonOption = None,
        operator: OperatorOption = None,
    ) -> None:
        if (saga_id is None) == (saga is None):
            fail("give one saga ID, or --saga NAME (not both)")
        if version is not None:
            if saga is None:
                fail("--version goes with --saga")
            count_or_fail("--version", version)
        if saga_id is not None:
            opts: dict[str, Any] = {"operator": operator, "reason": reason}
            perform(ctx, out, action, one_name, saga_id, sagas=sagas, **opts)
            return
        from sagakit import admin

        every: Callable[..., Awaitable[admin.BulkAction]] = getattr(admin, every_name)
        by, why = who_and_why(operator, reason)
        definitions = sagas_or_fail(sagas)
        result = _with_store(
            ctx,
            lambda store: every(
                store, definitions, saga, version=version, by=by, reason=why
            ),
        )
        out.print(f"{action}d {len(result.done)} saga(s)", highlight=False)
        for saga_ref in result.done:
            out.print(f"  {saga_ref}", highlight=False)
        for saga_ref, why in result.refused.items():
            err.print(f"skipped {saga_ref}: {why}", markup=False, highlight=False)
