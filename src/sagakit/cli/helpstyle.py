"""One look for every ``--help``: upper-case names stand for values
(``--limit N``, ``ID``), never typer's type labels (``<int>``, ``ID <str>``)
or braces around required arguments (``{ID}``).

Options name their metavar where they are declared; an argument shows its
metavar (or its name, upper-cased) alone, in the usage line as in the
argument list. :func:`plain_metavars` applies that to a command and its
subcommands, however deep (a lazy one when it is built); on a typer without
these methods it changes nothing but the metavars.
"""

from __future__ import annotations

from typing import Any

from sagakit.cli.lazytree import each_subcommand


def plain_metavars(command: Any) -> None:
    """Give the arguments of ``command`` and of its subcommands plain names."""
    for param in getattr(command, "params", ()):
        if getattr(param, "param_type_name", "") == "argument":
            _plain_argument(param)
    each_subcommand(command, plain_metavars)


def _plain_argument(param: Any) -> None:
    if param.metavar is None:
        param.metavar = (param.name or "value").upper()
    name = param.metavar

    def usage() -> str:
        return name if param.required else f"[{name}]"

    # typer's help record appends display_type_rich() to the name ("ID
    # <str>") and its usage line wraps a required one in braces ("{ID}")
    if hasattr(param, "display_type_rich"):
        param.display_type_rich = lambda ctx: None
    if hasattr(param, "_usage_display_name"):
        param._usage_display_name = usage
