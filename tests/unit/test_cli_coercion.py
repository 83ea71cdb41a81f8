"""Plain option values (``cli.coercion``): what click would make of them,
without typer's pydantic TypeAdapter."""

from __future__ import annotations

import math

import pytest
import typer.main

from sagakit.cli.coercion import convert, plain_values
from sagakit.cli.main import app


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        (int, "7", 7),
        (int, " 7 ", 7),
        (int, 50, 50),
        (float, "2.5", 2.5),
        (float, 30, 30.0),
        (str, "WARNING", "WARNING"),
        (bool, "yes", True),
        (bool, "Off", False),
        (bool, True, True),
    ],
)
def test_values_convert_as_click_converts_them(
    kind: type, given: object, expected: object
) -> None:
    got = convert(kind, given)
    assert got == expected
    assert type(got) is kind


@pytest.mark.parametrize(
    ("kind", "given"),
    [(int, "many"), (int, "2.5"), (int, True), (float, "x"), (bool, "maybe"), (str, 5)],
)
def test_other_values_are_refused(kind: type, given: object) -> None:
    with pytest.raises(ValueError, match=r"."):
        convert(kind, given)


def test_nan_is_a_float_as_for_click() -> None:
    assert math.isnan(convert(float, "nan"))


def test_sagakit_options_and_help_flags_convert_plainly() -> None:
    command = typer.main.get_command(app)
    plain_values(command)
    listing = command.commands["list"]  # type: ignore[attr-defined]
    limit = next(p for p in listing.params if p.name == "limit")
    assert type(limit._runtime_param).__name__ == "Plain"
    ctx = listing.make_context("list", [])
    help_flag = listing.get_help_option(ctx)
    assert type(help_flag._runtime_param).__name__ == "Plain"
    assert listing.make_context("list", ["--limit", "5"]).params["limit"] == 5
    with pytest.raises(Exception, match="'many' is not a valid integer"):
        listing.make_context("list", ["--limit", "many"])
