"""What the commands share: the one-line error exit, the saga definitions
argument, and the root ``--db``."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from sagakit.adapters.transport import ENV_VAR as TRANSPORT_ENV
from sagakit.cli.loader import LoadError, load_sagas
from sagakit.definition.saga import Saga

EXIT_ERROR = 2

err = Console(stderr=True, soft_wrap=True)  # one log line stays one line

SagasArgument = Annotated[
    str,
    typer.Argument(
        metavar="MODULE[:ATTR]",
        help="Where the saga definitions live: myapp.sagas or myapp.sagas:trip",
    ),
]

TransportOption = Annotated[
    str | None,
    typer.Option(
        "--transport",
        metavar="URL",
        help="Broker: amqp://, redis://, redis+cluster://, celery+amqp://, "
        f"celery+redis:// [default: ${TRANSPORT_ENV}]",
        show_default=False,
    ),
]


def fail(reason: str) -> NoReturn:
    """End the command with ``error: <reason>`` (red on a terminal), status 2."""
    err.print(
        f"error: {reason}", markup=False, highlight=False, soft_wrap=True, style="red"
    )
    raise typer.Exit(EXIT_ERROR)


def fail_plain(reason: str) -> NoReturn:
    """End the command with ``error: <reason>`` on one plain line, status 2."""
    typer.echo(f"error: {' '.join(reason.split())}", err=True)
    raise typer.Exit(EXIT_ERROR)


def sagas_or_fail(target: str) -> list[Saga[Any]]:
    """The sagas ``target`` names, or the command ends with why not."""
    try:
        return load_sagas(target)
    except LoadError as exc:
        fail(str(exc))


def db_of(ctx: typer.Context) -> str | None:
    """The root ``--db`` (None: ``$SAGAKIT_DATABASE_URL`` or the default)."""
    value = getattr(ctx.find_root().obj, "db", None)
    return value if isinstance(value, str) else None
