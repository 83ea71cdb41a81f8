"""``sagakit asyncapi`` and ``sagakit diagram``: documents from definitions.

Both only import the named module and render; no store or broker is opened.
Expected failures print one ``error: <reason>`` line and exit with status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sagakit.cli.common import fail_plain as _fail
from sagakit.cli.loader import LoadError, load_sagas, load_target
from sagakit.errors import SagaError

FORMATS = ("yaml", "json")


def _servers(values: list[str]) -> dict[str, str]:
    servers = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not url:
            _fail(f"invalid --server {value!r}: use NAME=URL")
        servers[name] = url
    return servers


def asyncapi(
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE[:ATTR]",
            help="An AsyncAPIApp (sagakit.asyncapi.describe), a Saga, a Participant, "
            "or a module or package of them.",
        ),
    ],
    *,
    output_format: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="yaml or json.")
    ] = "yaml",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write here.  [default: stdout]"
        ),
    ] = None,
    server: Annotated[
        list[str] | None,
        typer.Option(
            "--server",
            metavar="NAME=URL",
            help="A broker (amqp://, redis://, redis+cluster://, nats://); "
            "credentials are left out. Repeatable.",
        ),
    ] = None,
) -> None:
    """Print the AsyncAPI 3.0.0 document of sagas and participant services."""
    from sagakit.asyncapi import document, from_target, to_json, to_yaml

    fmt = output_format.lower()
    if fmt not in FORMATS:
        _fail(f"invalid --format {output_format!r}: use yaml or json")
    servers = _servers(server or [])
    try:
        app = from_target(load_target(target), servers=servers)
        doc = document(app.model())
        text = to_yaml(doc) if fmt == "yaml" else to_json(doc)
    except (LoadError, SagaError, ImportError) as exc:
        _fail(str(exc))
    _write(text, output)


def diagram(
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:SAGA",
            help="The saga, e.g. examples.create_order.order_service:create_order_saga",
        ),
    ],
    *,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write here.  [default: stdout]"
        ),
    ] = None,
) -> None:
    """Print a saga as a Mermaid flowchart (stages, pivot, compensations)."""
    from sagakit.asyncapi import mermaid

    try:
        sagas = load_sagas(target)
    except LoadError as exc:
        _fail(str(exc))
    if len(sagas) != 1:
        names = ", ".join(s.name for s in sagas)
        _fail(f"{target!r} holds {len(sagas)} sagas ({names}); name one as MODULE:SAGA")
    _write(mermaid(sagas[0]), output)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {str(output)!r}: {exc.strerror or exc}")


def register(app: typer.Typer) -> None:
    """Add ``asyncapi`` and ``diagram`` to the ``sagakit`` command."""
    app.command("asyncapi")(asyncapi)
    app.command("diagram")(diagram)
