"""The ``sagakit list`` table drawn without rich (``cli.table.plain``): where
it draws one, it is what rich prints on the same output, byte for byte;
where rich would lay it out otherwise, it leaves the table to rich."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sagakit.cli.render import rich_table
from sagakit.cli.table import (
    SGR,
    STATUS_STYLES,
    Cell,
    Column,
    Listing,
    output,
    plain,
    sagas,
)
from sagakit.engine.state import SagaState, SagaStatus
from sagakit.ports.store import SagaRecord
from sagakit.views.format import age, definition_label, local_time, status_label

COLUMNS = (
    Column("id", style="bold", wrap=False, whole=True),
    Column("saga"),
    Column("status", wrap=False),
    Column("updated", right=True),
)


def rich_text(table: Listing | Table, width: int, colours: str | None = None) -> str:
    """What rich prints for ``table`` (a listing: as ``render.rich_table``
    builds it) on a ``width``-wide pipe, or on a terminal with these
    ``colours`` (a rich colour system)."""
    out = io.StringIO()
    console = Console(
        file=out,
        width=width,
        force_terminal=colours is not None,
        color_system=colours,  # type: ignore[arg-type]
    )
    console.print(rich_table(table) if isinstance(table, Listing) else table)
    return out.getvalue()


def before(
    records: Sequence[SagaRecord], now: float, matching: str | None = None
) -> Table:
    """The ``sagakit list`` table as rich built it before ``cli.table``."""
    shown = f"{len(records)} of {matching}" if matching else str(len(records))
    table = Table(title=f"{shown} saga(s)", title_justify="left")
    width = max((len(r.saga_id) for r in records), default=2)
    table.add_column("id", no_wrap=True, min_width=width, style="bold")
    for name in ("saga", "status", "failed step", "created", "updated"):
        table.add_column(
            name,
            no_wrap=name == "status",
            justify="right" if name == "updated" else "left",
        )
    for r in records:
        status = status_label(r)
        table.add_row(
            r.saga_id,
            r.saga_name if r.definition_version == 1 else definition_label(r),
            Text(status, style=STATUS_STYLES.get(status, "")),
            r.state.failed_step or "",
            local_time(r.created_at),
            f"{age(now - r.updated_at)} ago",
        )
    return table


def record(saga_id: str, name: str, status: SagaStatus, **more: object) -> SagaRecord:
    state = SagaState(saga_id, name, status=status, failed_step=more.pop("step", None))
    fields: dict[str, object] = {
        "saga_id": saga_id,
        "saga_name": name,
        "status": status,
        "version": 1,
        "state": state,
        "context": {},
        "idempotency_key": None,
        "created_at": 1_700_000_000.0,
        "updated_at": 1_700_000_100.0,
        **more,
    }
    return SagaRecord(**fields)  # type: ignore[arg-type]


RECORDS = [
    record("a" * 32, "trip", SagaStatus.COMPENSATED, step="book_hotel"),
    record("b" * 32, "order", SagaStatus.RUNNING, definition_version=3),
    record("c" * 32, "order", SagaStatus.RUNNING, waiting="needs order v3"),
    record("d" * 8, "payment", SagaStatus.SUCCEEDED),
]


@pytest.mark.parametrize("count", [0, 1, 4])
@pytest.mark.parametrize("matching", [None, "more than 4", "40"])
@pytest.mark.parametrize("colours", [None, "standard", "256", "truecolor"])
def test_the_saga_list_is_drawn_as_rich_draws_it(
    count: int, matching: str | None, colours: str | None
) -> None:
    now = 1_700_000_200.0
    listing = sagas(RECORDS[:count], now, matching)

    drawn = plain(listing, 160, colour=colours is not None)

    assert drawn is not None
    assert drawn == rich_text(before(RECORDS[:count], now, matching), 160, colours)
    assert rich_text(listing, 160, colours) == drawn


def test_every_status_has_a_style_it_draws() -> None:
    assert set(STATUS_STYLES.values()) <= set(SGR)


@pytest.mark.parametrize("style", sorted(SGR))
def test_each_style_is_rich_s_own(style: str) -> None:
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system="standard").print(
        Text("x", style=style), end=""
    )
    expected = f"\x1b[{SGR[style]}mx\x1b[0m" if style else "x"

    assert out.getvalue() == expected


@pytest.mark.parametrize("width", [40, 80, 100])
def test_a_table_wider_than_the_output_is_left_to_rich(width: int) -> None:
    listing = sagas(RECORDS, now=1_700_000_200.0)
    fits = len(rich_text(listing, 500).splitlines()[1])  # the top border

    assert plain(listing, fits) == rich_text(listing, fits)
    assert plain(listing, fits - 1) is None  # rich wraps the dates
    assert rich_text(listing, width) == rich_text(
        before(RECORDS, 1_700_000_200.0), width
    )


@pytest.mark.parametrize(
    "name", ["réservation", "予約", "trip\nv2", "a\tb", "\x1b[31m"]
)
def test_names_rich_lays_out_itself_are_left_to_it(name: str) -> None:
    listing = sagas([record("e" * 32, name, SagaStatus.FAILED)], now=1.7e9)

    assert plain(listing, 160) is None


ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=24)
TEXT = st.one_of(ASCII.map(str.strip), ASCII)  # mostly what it draws
CELL = st.tuples(TEXT, st.one_of(st.just(""), st.sampled_from(sorted(SGR))))


@settings(max_examples=150, deadline=None)
@given(
    title=TEXT,
    rows=st.lists(st.tuples(CELL, CELL, CELL, CELL), max_size=4),
    width=st.integers(min_value=20, max_value=120),
    colours=st.sampled_from([None, "standard", "truecolor"]),
)
def test_any_table_it_draws_is_what_rich_draws(
    title: str, rows: list[tuple[Cell, ...]], width: int, colours: str | None
) -> None:
    listing = Listing(title, COLUMNS, rows)

    drawn = plain(listing, width, colour=colours is not None)

    if drawn is not None:
        assert drawn == rich_text(listing, width, colours)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (160, False)),
        ({"COLUMNS": "100"}, (100, False)),
        ({"COLUMNS": "wide"}, (80, False)),  # rich asks the terminal: none
        ({"FORCE_COLOR": "1"}, (160, True)),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, None),  # rich drops the colours
        ({"FORCE_COLOR": "1", "TERM": "dumb"}, None),
        ({"FORCE_COLOR": ""}, (160, False)),
        ({"TTY_COMPATIBLE": "1", "COLUMNS": "90"}, (90, True)),
        ({"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"}, (160, False)),
    ],
)
def test_the_output_is_drawn_as_rich_would_draw_it(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    expected: tuple[int, bool] | None,
) -> None:
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # not a tty
    monkeypatch.setattr("sys.stdout", stdout)
    monkeypatch.setattr("os.get_terminal_size", _no_terminal)

    assert output() == expected


def _no_terminal(descriptor: int) -> object:
    raise OSError(descriptor)
