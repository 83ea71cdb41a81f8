"""Option values of plain types (``str``, ``int``, ``float``, ``bool``)
converted the way click converts them, without typer's pydantic
``TypeAdapter``.

typer (0.2x) converts every option and argument value through a pydantic
``TypeAdapter`` built on first use (``--help``'s unset flag included), so
any command imported pydantic: about a third of ``sagakit list``'s start-up.
Every value sagakit's commands take is a plain string, number or flag (or a
path, which typer handles itself), for which ``int("7")`` says all pydantic
would. Parameters of other shapes keep typer's own conversion, and so does
everything on a typer without this mechanism (:func:`plain_values` then
changes nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sagakit.cli.lazytree import each_subcommand

_NAMES = {str: "string", int: "integer", float: "float", bool: "boolean"}
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def plain_values(command: Any) -> None:
    """Give the plain-typed parameters of ``command`` and of its
    subcommands, however deep, their help options included, a conversion of
    their own."""
    try:
        from typer._click.exceptions import BadParameter
        from typer._coercion import RuntimeParam
    except ImportError:  # another typer: it converts as it always did
        return

    class Plain(RuntimeParam):
        """``int(value)`` and the like; click's message if it fails."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                return convert(self.annotation, value)
            except ValueError:
                name = _NAMES[self.annotation]
                raise BadParameter(
                    f"{value!r} is not a valid {name}.", ctx=ctx, param=param
                ) from None

    _convert(command, Plain)


def convert(kind: type[Any], value: Any) -> Any:
    """``value`` (a string from the command line, or a default) as ``kind``;
    ValueError if it is not one."""
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    if kind is bool and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    elif isinstance(value, str) or (
        kind is float and isinstance(value, int) and not isinstance(value, bool)
    ):
        return kind(value)
    raise ValueError(value)


def _convert(command: Any, plain: type[Any]) -> None:
    for param in getattr(command, "params", ()):
        _plain(param, plain)
    found = getattr(command, "get_help_option", None)
    if callable(found):
        command.get_help_option = _with_plain_help(found, plain)
    each_subcommand(command, lambda sub: _convert(sub, plain))


def _with_plain_help(
    found: Callable[[Any], Any], plain: type[Any]
) -> Callable[[Any], Any]:
    """``get_help_option`` whose option (made on first use) is plain too."""

    def help_option(ctx: Any) -> Any:
        option = found(ctx)
        if option is not None:
            _plain(option, plain)
        return option

    return help_option


def _plain(param: Any, plain: type[Any]) -> None:
    shape = getattr(param, "type_descriptor", None)
    if shape is None or shape.annotation not in _NAMES:
        return
    if shape.is_choice or shape.is_path or shape.is_file or shape.is_ranged:
        return
    if getattr(param, "_runtime_param", "") is None:  # not converted yet
        param._runtime_param = plain(  # typer's conversion, made on first use
            parameter_info=shape.parameter_info, annotation=shape.annotation
        )
