"""The ``sagakit list`` table as data, and a writer of it that needs no rich.

rich (its console, tables, text and styles) costs more to import than
everything ``sagakit list`` does on a SQLite file, and its layout more than
the query. Output that is not a terminal -- a pipe, a file, a test -- gets
no colour from rich, so when the table fits the width rich would draw it in
(``$COLUMNS``, else :data:`~sagakit.cli.common.PIPE_WIDTH`) and holds
printable ASCII alone, :func:`plain` draws it itself, byte for byte as rich
does: its box characters, widths, padding and title. Anything else -- a
terminal, a table rich would wrap, a name with other characters, an output
that cannot encode the box -- is drawn by rich
(:func:`sagakit.cli.render.rich_table`) from the same :class:`Listing`;
:func:`show` picks.

Standard library only: importing this module must not import rich.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sagakit.cli.common import PIPE_WIDTH
from sagakit.engine.status import SagaStatus
from sagakit.views.format import age, definition_label, local_time, status_label

if TYPE_CHECKING:
    from rich.console import Console

    from sagakit.ports.store import SagaRecord

STATUS_STYLES: dict[str, str] = {
    SagaStatus.RUNNING.value: "cyan",
    SagaStatus.COMPENSATING.value: "magenta",
    SagaStatus.SUCCEEDED.value: "green",
    SagaStatus.COMPENSATED.value: "yellow",
    SagaStatus.COMPENSATION_FAILED.value: "bold red",
    SagaStatus.FAILED.value: "red",
    "compensation_skipped": "yellow",
    "started": "dim",
    "sent": "green",
    "resumed": "cyan",
    "in_progress": "cyan",
    "stalled": "bold red",
    "published": "",
    "consumed": "green",
    "duplicate": "dim",
    "waiting": "bold yellow",
    "running (paused)": "bold yellow",
    "compensating (paused)": "bold yellow",
}
"""The colour of each status and outcome (rich style names), on a terminal."""


# Column and Listing are plain classes: a dataclass is built (its methods
# compiled) when its module is imported, a cost on every `sagakit list`


class Column:
    """A column: its header; ``right``-aligned or not; its cells' style; on
    a terminal too narrow for the table, whether its cells may ``wrap``, and
    whether it stays ``whole`` (never narrower than its widest cell: an id
    is not cut short)."""

    __slots__ = ("name", "right", "style", "whole", "wrap")

    def __init__(
        self,
        name: str,
        *,
        right: bool = False,
        style: str = "",
        wrap: bool = True,
        whole: bool = False,
    ) -> None:
        self.name = name
        self.right = right
        self.style = style
        self.wrap = wrap
        self.whole = whole


Cell = tuple[str, str]
"""A cell's text and its style ("" for the column's own)."""


class Listing:
    """A titled table, not yet drawn: columns and rows of cells."""

    __slots__ = ("columns", "rows", "title")

    def __init__(
        self, title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]
    ) -> None:
        self.title = title
        self.columns = columns
        self.rows = rows


def sagas(
    records: Sequence[SagaRecord], now: float, matching: str | None = None
) -> Listing:
    """The ``sagakit list`` table, newest first; titled "3 of 30 saga(s)"
    when ``matching`` (how many match, as said) is given."""
    shown = f"{len(records)} of {matching}" if matching else str(len(records))
    columns = (
        Column("id", style="bold", wrap=False, whole=True),
        Column("saga"),
        Column("status", wrap=False),
        Column("failed step"),
        Column("created"),
        Column("updated", right=True),
    )
    rows = []
    for r in records:
        status = status_label(r)
        rows.append(
            (
                (r.saga_id, ""),
                (r.saga_name if r.definition_version == 1 else definition_label(r), ""),
                (status, STATUS_STYLES.get(status, "")),
                (r.state.failed_step or "", ""),
                (local_time(r.created_at), ""),
                (f"{age(now - r.updated_at)} ago", ""),
            )
        )
    return Listing(f"{shown} saga(s)", columns, rows)


def pipe_width() -> int | None:
    """The width rich draws standard output in when it is no terminal by
    rich's rules (``TTY_COMPATIBLE``, then ``FORCE_COLOR``, then whether it
    is a tty): ``$COLUMNS``, else :data:`~sagakit.cli.common.PIPE_WIDTH`;
    None for a terminal, or when rich would ask the terminal its width."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    force = os.environ.get("FORCE_COLOR")
    try:
        tty = sys.stdout.isatty()
    except ValueError:  # closed
        tty = False
    if compatible == "1" or (compatible != "0" and (tty if force is None else force)):
        return None
    columns = os.environ.get("COLUMNS")
    if columns is not None:
        return int(columns) if columns.isdigit() else None
    return None if tty else PIPE_WIDTH


def show(listing: Listing, out: Console) -> None:
    """Print ``listing`` on standard output: as :func:`plain` text when it
    can, else with rich on ``out`` (a console on standard output)."""
    width = pipe_width()
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower()
    if width is not None and encoding.startswith("utf"):
        text = plain(listing, width)
        if text is not None:
            sys.stdout.write(text)
            return
    from sagakit.cli.render import rich_table

    out.print(rich_table(listing))


def plain(listing: Listing, width: int) -> str | None:
    """``listing`` as rich draws it with no colour on an output ``width``
    columns wide; None unless it fits and every text in it is printable
    ASCII with no space at either end (rich's own layout is then needed:
    wrapping, wide characters, stripping)."""
    header = [column.name for column in listing.columns]
    rows = [[text for text, _ in row] for row in listing.rows]
    texts = [listing.title, *header, *(text for row in rows for text in row)]
    if not all(_simple(text) for text in texts):
        return None
    widths = [max(map(len, column)) for column in zip(header, *rows, strict=True)]
    total = sum(widths) + 3 * len(widths) + 1
    if total > width or len(listing.title) > total:
        return None
    right = [column.right for column in listing.columns]

    def rule(left: str, line: str, cross: str, end: str) -> str:
        return left + cross.join(line * (w + 2) for w in widths) + end

    def cells(edge: str, texts: Sequence[str]) -> str:
        padded = (
            text.rjust(w) if align_right else text.ljust(w)
            for text, w, align_right in zip(texts, widths, right, strict=True)
        )
        return edge + edge.join(f" {text} " for text in padded) + edge

    # rich's HEAVY_HEAD box
    lines = [
        *([listing.title.ljust(total)] if listing.title else []),
        rule("┏", "━", "┳", "┓"),
        cells("┃", header),
        rule("┡", "━", "╇", "┩"),
        *(cells("│", row) for row in rows),
        rule("└", "─", "┴", "┘"),
    ]
    return "\n".join(lines) + "\n"


def _simple(text: str) -> bool:
    return text.isascii() and text.isprintable() and text.strip(" ") == text
