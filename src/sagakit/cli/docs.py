"""``sagakit asyncapi`` and ``sagakit diagram``: documents from definitions.

Both only import the named module and render; no store or broker is opened.
Expected failures print one ``error: <reason>`` line and exit with status 2.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from sagakit.asyncapi import document, from_target, mermaid, to_json, to_yaml
from sagakit.cli.loader import LoadError, load_sagas
from sagakit.errors import SagaError

EXIT_ERROR = 2
FORMATS = ("yaml", "json")


def _fail(reason: str) -> NoReturn:
    typer.echo(f"error: {' '.join(reason.split())}", err=True)
    raise typer.Exit(EXIT_ERROR)


def _resolve(target: str) -> object:
    """What ``MODULE[:ATTR]`` names: the module, or its attribute."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise LoadError(f"{target!r} names no module; use MODULE or MODULE:ATTR")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    if module_name.startswith("."):
        raise LoadError(f"{target!r} is a relative module name; give the full one")
    try:
        module = importlib.import_module(module_name)
    except (ImportError, ValueError) as exc:  # ValueError: a NUL in the name
        raise LoadError(f"cannot import {module_name!r}: {exc}") from exc
    if not attr:
        return module
    try:
        return getattr(module, attr)
    except AttributeError:
        raise LoadError(f"module {module_name!r} has no attribute {attr!r}") from None


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
            "--output", "-o", metavar="FILE", help="Write here [default: stdout]."
        ),
    ] = None,
    server: Annotated[
        list[str] | None,
        typer.Option(
            "--server",
            metavar="NAME=URL",
            help="A broker (amqp://, redis://, redis+cluster://); credentials are left "
            "out. Repeatable.",
        ),
    ] = None,
) -> None:
    """Print the AsyncAPI 3.0.0 document of sagas and participant services."""
    fmt = output_format.lower()
    if fmt not in FORMATS:
        _fail(f"invalid --format {output_format!r}: use yaml or json")
    servers = _servers(server or [])
    try:
        app = from_target(_resolve(target), servers=servers)
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
            "--output", "-o", metavar="FILE", help="Write here [default: stdout]."
        ),
    ] = None,
) -> None:
    """Print a saga as a Mermaid flowchart (stages, pivot, compensations)."""
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
