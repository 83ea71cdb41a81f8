"""Operator commands on one compensation, and ``fork``.

``retry-compensation ID STEP``, ``mark-compensated ID STEP`` and
``skip-compensation ID STEP`` act on the compensation of one step of a
rolling-back saga; ``fork ID --from STEP`` starts a new instance that
re-runs a saga that ended from STEP, with the results recorded before it
(``--context`` changes fields of its context first). They call
:mod:`sagakit.admin` as ``retry`` and ``resume`` do: the action is
committed, a worker (or ``sagakit recover MODULE``) runs what it started,
and the command says which. Each needs who asks (``--as`` or
``$SAGAKIT_OPERATOR``) and why (``--reason``); a refusal (past the pivot,
a step without a compensation, a saga a live worker drives...) and bad
input print one ``error: ...`` line and exit with status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sagakit.cli.admin import (
    OperatorOption,
    ReasonOption,
    SagasOption,
    _with_store,
    handed_over,
    perform,
    who_and_why,
)
from sagakit.cli.common import fail, sagas_or_fail

if TYPE_CHECKING:
    from rich.console import Console

    from sagakit.ports.store import SagaRecord, SagaStore
    from sagakit.runtime.fork import Forked

SagaId = Annotated[str, typer.Argument(metavar="ID", help="Saga id or unique prefix.")]

_STEP_ACTIONS = {  # the sagakit.admin function and the help, by command
    "retry-compensation": (
        "retry_compensation",
        "Run the compensation of STEP, which failed for good, again (after\n"
        "fixing its cause); then the rollback goes on.",
    ),
    "mark-compensated": (
        "mark_compensated",
        "Record that STEP was undone by hand, outside the saga: its compensation\n"
        "counts as succeeded without running, and the rollback goes on.",
    ),
    "skip-compensation": (
        "skip_compensation",
        "Leave STEP done: its compensation never runs (compensation_skipped),\n"
        "and the rollback goes on without it.",
    ),
}


def register(app: typer.Typer, out: Console) -> None:
    """Attach ``retry-compensation``, ``mark-compensated``,
    ``skip-compensation`` and ``fork``."""
    for command, (call_name, help_text) in _STEP_ACTIONS.items():
        _add_step_action(app, out, command, call_name, help_text)
    _add_fork(app, out)


def _add_step_action(
    app: typer.Typer, out: Console, command: str, call_name: str, help_text: str
) -> None:
    @app.command(command, help=help_text)
    def step_action(
        ctx: typer.Context,
        saga_id: SagaId,
        step: Annotated[
            str,
            typer.Argument(
                metavar="STEP", help="The step whose compensation this acts on."
            ),
        ],
        *,
        sagas: SagasOption,
        reason: ReasonOption = None,
        operator: OperatorOption = None,
    ) -> None:
        opts: dict[str, Any] = {"operator": operator, "reason": reason}
        perform(ctx, out, command, call_name, saga_id, step, sagas=sagas, **opts)


def _add_fork(app: typer.Typer, out: Console) -> None:
    @app.command("fork")
    def fork(
        ctx: typer.Context,
        saga_id: SagaId,
        *,
        step: Annotated[
            str,
            typer.Option(
                "--from",
                metavar="STEP",
                help="Re-run from this step; the steps before it keep their results.",
            ),
        ],
        sagas: SagasOption,
        context: Annotated[
            str | None,
            typer.Option(
                "--context",
                metavar="JSON",
                help="Fields of the context to change, as a JSON object (or "
                "@FILE); checked by the saga's context model.",
            ),
        ] = None,
        new_id: Annotated[
            str | None,
            typer.Option("--id", metavar="ID", help="The new saga's id (random)."),
        ] = None,
        reason: ReasonOption = None,
        operator: OperatorOption = None,
    ) -> None:
        """Start a new saga that re-runs one that ended from a step, with the
        results recorded before it (a worker or `recover` runs it)."""
        from sagakit import admin

        by, why = who_and_why(operator, reason)
        changes = None if context is None else _fields(context)
        definitions = sagas_or_fail(sagas)

        async def work(store: SagaStore) -> tuple[Forked, SagaRecord]:
            source = await admin.find(store, saga_id)
            edited = None if changes is None else source.context | changes
            forked = await admin.fork(
                store,
                definitions,
                source.saga_id,
                step,
                by=by,
                reason=why,
                context=edited,
                new_id=new_id,
            )
            return forked, await store.get(forked.saga_id)

        forked, record = _with_store(ctx, work)
        if forked.finished and forked.line is not None:
            said = forked.line.result
            out.print(
                f"{forked.source} was forked before (by {said.get('by')}: "
                f"{said.get('reason')}), and a crash stopped that fork before its "
                "saga was created: created it now, as asked then",
                highlight=False,
                soft_wrap=True,
            )
        out.print(
            f"forked {forked.source} from step {forked.step} into {forked.saga_id}",
            highlight=False,
            soft_wrap=True,
        )
        handed_over(out, "fork", record, sagas, None)


def _fields(text: str) -> dict[str, Any]:
    """``--context``: a JSON object, inline or ``@FILE``."""
    source = "--context"
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"--context: cannot read {path}: {exc.strerror or exc}")
        source = f"--context {path}"
    try:
        value = json.loads(text)
    except ValueError as exc:
        fail(f"{source} is not JSON: {exc}")
    if not isinstance(value, dict):
        fail(f"{source} must be a JSON object (the context fields to change)")
    return value
