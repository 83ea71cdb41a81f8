"""The ``sagakit list`` table drawn without rich (``cli.table.plain``): where
it draws one, it is what rich prints on the same output, byte for byte;
where rich would lay it out otherwise, it leaves the table to rich."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from sagakit.cli.render import rich_table
from sagakit.cli.table import Column, Listing, pipe_width, plain, sagas
from sagakit.engine.state import SagaState, SagaStatus
from sagakit.ports.store import SagaRecord

COLUMNS = (
    Column("id", style="bold", wrap=False, whole=True),
    Column("saga"),
    Column("status", wrap=False),
    Column("updated", right=True),
)


def rich_text(listing: Listing, width: int) -> str:
    """What rich prints for ``listing`` on a ``width``-wide pipe."""
    out = io.StringIO()
    Console(file=out, width=width).print(rich_table(listing))
    return out.getvalue()


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
def test_the_saga_list_is_drawn_as_rich_draws_it(
    count: int, matching: str | None
) -> None:
    listing = sagas(RECORDS[:count], now=1_700_000_200.0, matching=matching)

    drawn = plain(listing, 160)

    assert drawn is not None
    assert drawn == rich_text(listing, 160)


def test_a_table_wider_than_the_output_is_left_to_rich() -> None:
    listing = sagas(RECORDS, now=1_700_000_200.0)
    width = len(rich_text(listing, 500).splitlines()[1])  # the top border

    assert plain(listing, width) == rich_text(listing, width)
    assert plain(listing, width - 1) is None  # rich wraps the dates


@pytest.mark.parametrize(
    "name", ["réservation", "予約", "trip\nv2", "a\tb", "\x1b[31m"]
)
def test_names_rich_lays_out_itself_are_left_to_it(name: str) -> None:
    listing = sagas([record("e" * 32, name, SagaStatus.FAILED)], now=1.7e9)

    assert plain(listing, 160) is None


TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=24)


@settings(max_examples=150, deadline=None)
@given(
    title=TEXT,
    rows=st.lists(st.tuples(TEXT, TEXT, TEXT, TEXT), max_size=4),
    width=st.integers(min_value=20, max_value=120),
)
def test_any_table_it_draws_is_what_rich_draws(
    title: str, rows: list[tuple[str, str, str, str]], width: int
) -> None:
    listing = Listing(
        title, COLUMNS, [tuple((text, "") for text in row) for row in rows]
    )

    drawn = plain(listing, width)

    if drawn is not None:
        assert drawn == rich_text(listing, width)


@pytest.mark.parametrize(
    ("env", "width"),
    [
        ({}, 160),
        ({"COLUMNS": "100"}, 100),
        ({"COLUMNS": "wide"}, None),  # rich asks the terminal
        ({"FORCE_COLOR": "1"}, None),  # colours: rich draws
        ({"FORCE_COLOR": ""}, 160),
        ({"TTY_COMPATIBLE": "1"}, None),
        ({"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"}, 160),
    ],
)
def test_the_width_of_a_pipe_is_the_one_rich_uses(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], width: int | None
) -> None:
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.stdout", io.StringIO())  # not a tty

    assert pipe_width() == width
