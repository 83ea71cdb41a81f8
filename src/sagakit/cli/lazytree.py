"""The ``sagakit`` command tree, each command built when it is used.

typer turns every command of an app into a click command before it parses
anything: ``inspect.signature`` and ``typing.get_type_hints`` (an ``eval``
per annotation) for each of sagakit's thirty-odd commands, whichever one
runs; about a fifth of ``sagakit --help``. :func:`lazy_command` builds the
root group with its own options alone, and typer builds a subcommand, the
same way as before, when click looks it up by name. The root's ``--help``
lists the commands from what typer registered (name, help, hidden), building
none of them.

``typer.main.get_command(app)`` (what ``typer.testing.CliRunner`` uses)
still builds the whole tree at once; both trees print the same help, which
``tests/integration/test_cli_help.py`` checks page by page.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

Visit = Callable[[Any], None]


class LazyCommands(MutableMapping[str, Any]):
    """A group's subcommands by name, in the order typer registered them;
    each made by its ``build`` function on first read."""

    def __init__(
        self,
        builders: dict[str, Callable[[], Any]],
        summaries: dict[str, Callable[[], Any]],
    ) -> None:
        self._builders = builders  # name -> the command, made
        self._summaries = summaries  # name -> a stand-in for the help list
        self._built: dict[str, Any] = {}
        self._visits: list[Visit] = []

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            command = self._builders[name]()  # KeyError: no such command
            for visit in self._visits:
                visit(command)
            self._built[name] = command
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._builders[name] = self._summaries[name] = lambda: command
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._builders[name]
        del self._summaries[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)

    @property
    def built(self) -> list[str]:
        """The names of the commands built so far."""
        return list(self._built)

    def when_built(self, visit: Visit) -> None:
        """Call ``visit`` on each command: now on those built, later on the
        others as they are built."""
        self._visits.append(visit)
        for command in self._built.values():
            visit(command)

    def summaries(self) -> dict[str, Any]:
        """Each command as its group's help lists it: the command itself if
        built, else a stand-in with its name, help and flags (no options)."""
        return {
            name: self._built[name] if name in self._built else summary()
            for name, summary in self._summaries.items()
        }


class LazyGroup(TyperGroup):
    """A typer group whose help lists lazy subcommands without building them."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # typer's reads every command: builds them

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        commands = self.commands
        if not isinstance(commands, LazyCommands):
            super().format_commands(ctx, formatter)
            return
        self.commands = commands.summaries()
        try:
            super().format_commands(ctx, formatter)
        finally:
            self.commands = commands


def each_subcommand(command: Any, visit: Visit) -> None:
    """Call ``visit`` on each direct subcommand of ``command``; on a lazy
    one when it is built."""
    commands = getattr(command, "commands", None)
    if isinstance(commands, LazyCommands):
        commands.when_built(visit)
    elif commands:
        for sub in commands.values():
            visit(sub)


def lazy_command(app: typer.Typer) -> Any:
    """The click group ``typer.main.get_command(app)`` makes, its
    subcommands built on first use; ``app``'s group class must be a
    :class:`LazyGroup`. An app of another shape is built all at once."""
    groups = [
        (group, typer.main.solve_typer_info_defaults(group))
        for group in app.registered_groups
    ]
    if not app.registered_callback or not all(solved.name for _, solved in groups):
        return typer.main.get_command(app)  # commands merged from a nameless group
    shell = copy.copy(app)  # the root: its callback, options, completion
    shell.registered_commands = []
    shell.registered_groups = []
    root = typer.main.get_command(shell)
    if not isinstance(root, LazyGroup):
        return typer.main.get_command(app)
    options: dict[str, Any] = {
        "pretty_exceptions_short": app.pretty_exceptions_short,
        "rich_markup_mode": app.rich_markup_mode,
    }
    builders: dict[str, Callable[[], Any]] = {}
    summaries: dict[str, Callable[[], Any]] = {}
    for info in app.registered_commands:
        callback: Any = info.callback
        name = info.name or typer.main.get_command_name(callback.__name__)
        builders[name] = _command_builder(info, options)
        summaries[name] = _command_summary(info, name)
    for group, solved in groups:
        named = str(solved.name)
        builders[named] = _group_builder(group, options, app.suggest_commands)
        summaries[named] = _group_summary(solved)
    root.commands = LazyCommands(builders, summaries)
    return root


def _command_builder(info: Any, options: dict[str, Any]) -> Callable[[], Any]:
    return lambda: typer.main.get_command_from_info(info, **options)


def _group_builder(
    info: Any, options: dict[str, Any], suggest: bool
) -> Callable[[], Any]:
    return lambda: typer.main.get_group_from_info(
        info, suggest_commands=suggest, **options
    )


def _command_summary(info: Any, name: str) -> Callable[[], Any]:
    def summary() -> Any:
        shown = info.help
        text = (
            inspect.getdoc(info.callback) if shown is None else inspect.cleandoc(shown)
        )
        return TyperCommand(
            name=name,
            help=text,
            short_help=info.short_help,
            hidden=info.hidden,
            deprecated=info.deprecated,
        )

    return summary


def _group_summary(solved: Any) -> Callable[[], Any]:
    return lambda: TyperCommand(
        name=solved.name,
        help=solved.help,
        short_help=solved.short_help,
        hidden=solved.hidden,
        deprecated=solved.deprecated,
    )
