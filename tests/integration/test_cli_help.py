"""Every command's ``--help``, read as a user reads it: each help text shows
whole (nothing in square brackets eaten as markup), with no leftover rich
markup or reST, and one metavar style (upper-case names, no ``<int>``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sagakit.cli.lazytree import LazyCommands, lazy_command
from sagakit.cli.main import app

LEFTOVERS = {
    "reST literal": re.compile(r"``"),
    "reST role": re.compile(r":(func|class|mod|meth|data|attr|exc):`"),
    "rich markup": re.compile(r"\[/?(bold|dim|italic|red|green|yellow|cyan|b|i)\b"),
    "typer's type metavar": re.compile(r"<(str|int|float|text|path|\w+ range)>"),
    "a default not set apart": re.compile(r"\S \[default:"),
}
METAVAR = re.compile(r"^[A-Z][A-Z0-9_]*([:=.\[\]][A-Z0-9_:\[\]]*)*$")


def walk(command: Any, path: list[str], ctx: Any) -> list[tuple[list[str], Any]]:
    found = [(path, command)]
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            found += walk(sub, [*path, name], typer.Context(sub, parent=ctx))
    return found


ROOT = typer.main.get_command(app)
COMMANDS = walk(ROOT, [], typer.Context(ROOT, info_name="sagakit"))


def words(text: str) -> str:
    """``text`` on one line, single spaces; a word broken at its hyphen
    (``read-`` at the end of a line, ``only`` on the next) joined again."""
    return re.sub(r"(\w)- (\w)", r"\1-\2", " ".join(text.split()))


def show_help(path: list[str]) -> str:
    done = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert done.exit_code == 0, done.output
    return done.output


def test_every_command_is_walked() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {
        "",
        "list",
        "recover",
        "db migrate",
        "dlq replay",
        "workflows show",
    } <= names
    assert len(names) > 30


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "sagakit" for p, _ in COMMANDS]
)
def test_help_is_plain_and_whole(path: list[str], command: Any) -> None:
    shown = show_help(path)
    for what, pattern in LEFTOVERS.items():
        found = pattern.search(shown)
        assert found is None, f"{what} {found and found.group()!r} in:\n{shown}"
    usage = shown.splitlines()[0]
    assert "{" not in usage, usage
    flat = words(shown)
    texts = [
        command.help or "",
        *(getattr(p, "help", None) or "" for p in command.params),
    ]
    for text in texts:
        assert words(text) in flat, f"help text not shown whole: {text!r}\n{shown}"
    for param in command.params:
        if getattr(param, "is_flag", False) or param.name == "help":
            continue
        assert param.metavar is not None, f"{param.name} has no metavar"
        assert METAVAR.match(param.metavar), param.metavar


@pytest.mark.parametrize("group", ["db", "dlq", "workflows"])
def test_a_bare_group_prints_its_help_once(group: str) -> None:
    done = CliRunner().invoke(app, [group])
    assert done.exit_code == 0
    assert done.output.count("Usage:") == 1
    assert f"sagakit {group} [OPTIONS] COMMAND" in done.output


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["workflows", "list"],
        ["locks"],
        ["dlq", "list", "q", "--transport", "redis://127.0.0.1:1"],
        ["recover", "sagakit.examples.trip"],
        ["retry", "--all-failed", "--sagas", "sagakit.examples.trip"],
    ],
)
def test_limit_errors_are_worded_alike(args: list[str], tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    done = CliRunner().invoke(app, ["--db", str(db), *args, "--limit", "0"])
    assert done.exit_code == 2
    assert done.output.strip() == "error: invalid --limit 0: it must be at least 1"
    assert not db.exists()


def test_shell_completion_completes_commands_and_options() -> None:
    def complete(line: str) -> list[str]:
        env = {
            "_SAGAKIT_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(line.split()) - 1),
        }
        done = CliRunner().invoke(app, [], env=env, prog_name="sagakit")
        assert done.exit_code == 0, done.output
        return done.output.split()

    assert set(complete("sagakit wor")) == {"worker", "workflows"}
    assert "--until-idle" in complete("sagakit worker --unt")
    script = CliRunner().invoke(
        app, [], env={"_SAGAKIT_COMPLETE": "source_bash"}, prog_name="sagakit"
    )
    assert "complete" in script.output
    assert "_sagakit_completion" in script.output


def help_of(root: Any, path: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = root.main([*path, "--help"], prog_name="sagakit", standalone_mode=False)
    assert code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "path",
    [p for p, _ in COMMANDS],
    ids=[" ".join(p) or "sagakit" for p, _ in COMMANDS],
)
def test_the_lazy_tree_prints_the_same_help(
    path: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # what the sagakit script runs: the tree built command by command
    root = lazy_command(app)

    shown = help_of(root, path, capsys)

    assert shown == help_of(typer.main.get_command(app), path, capsys)
    assert isinstance(root.commands, LazyCommands)
    assert root.commands.built == path[:1]  # the command asked for, no other


def test_the_lazy_tree_holds_every_command_in_order() -> None:
    root = lazy_command(app)
    ctx = typer.Context(root, info_name="sagakit")

    assert root.list_commands(ctx) == ROOT.list_commands(ctx)
    assert root.commands.built == []
    assert root.get_command(ctx, "nonesuch") is None
    assert root.get_command(ctx, "list").name == "list"
    assert root.commands.built == ["list"]
