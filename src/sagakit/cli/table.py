"""The ``sagakit list`` table as data, and a writer of it that needs no rich.

rich (its console, tables, text and styles) costs more to import than
everything ``sagakit list`` does on a SQLite file, and its layout more than
the query. When the table fits the width rich would draw it in, holds
printable ASCII alone and uses the few styles of :data:`SGR`, :func:`plain`
draws it itself, byte for byte as rich does on the same output: its box
characters, widths, padding and title, and on a terminal its colour codes.
Anything else -- a table rich would wrap, a name with other characters,
``NO_COLOR`` on a terminal, an output that cannot encode the box, Windows --
is drawn by rich (:func:`sagakit.cli.render.rich_table`) from the same
:class:`Listing`; :func:`show` picks. ``tests/unit/test_cli_table.py``
draws random tables both ways.

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


SGR = {
    "": "",
    "bold": "1",
    "dim": "2",
    "italic": "3",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "magenta": "35",
    "cyan": "36",
    "bold red": "1;31",
    "bold yellow": "1;33",
}
"""The styles :func:`plain` draws, as terminal (SGR) codes: those of rich
with any of its colour systems (named colours are the standard ones)."""


def output() -> tuple[int, bool] | None:
    """How rich would draw on standard output: its width, and whether in
    colour (a terminal by rich's rules: ``TTY_COMPATIBLE``, then
    ``FORCE_COLOR``, then ``isatty()``); None where :func:`plain` does not
    know how (Windows, ``NO_COLOR`` or a dumb terminal with colours on,
    an output that cannot encode the box characters)."""
    environ = os.environ
    stream = sys.stdout
    encoding = (getattr(stream, "encoding", None) or "").lower()
    if sys.platform == "win32" or not encoding.startswith("utf"):
        return None
    try:
        tty = stream.isatty()
    except ValueError:  # closed
        tty = False
    compatible = environ.get("TTY_COMPATIBLE", "")
    force = environ.get("FORCE_COLOR")
    colour = compatible == "1" or (
        compatible != "0" and (tty if force is None else force != "")
    )
    dumb = environ.get("TERM", "").lower() in ("dumb", "unknown")
    if colour and (environ.get("NO_COLOR", "") != "" or dumb):
        return None
    columns = environ.get("COLUMNS")
    if not tty and columns is None:  # the console of cli.main
        return PIPE_WIDTH, colour
    width = 0  # rich's: the first standard stream that is a terminal, or 80
    for descriptor in (0, 1, 2):
        try:
            width = os.get_terminal_size(descriptor).columns
        except (AttributeError, ValueError, OSError):
            continue
        break
    if columns is not None and columns.isdigit():
        width = int(columns)
    return width or 80, colour


def show(listing: Listing, out: Console) -> None:
    """Print ``listing`` on standard output: as :func:`plain` text when it
    can, else with rich on ``out`` (a console on standard output)."""
    how = output()
    text = None if how is None else plain(listing, *how)
    if text is not None:
        sys.stdout.write(text)
        return
    from sagakit.cli.render import rich_table

    out.print(rich_table(listing))


def plain(listing: Listing, width: int, colour: bool = False) -> str | None:
    """``listing`` as rich draws it on an output ``width`` columns wide, in
    ``colour`` or not; None unless it fits, every text in it is printable
    ASCII with no space at either end, and every style is in :data:`SGR`
    (no cell has a style of its own in a column that has one): rich's own
    layout is needed for the rest (wrapping, wide characters, stripping,
    combined styles)."""
    if not _drawable(listing):
        return None
    header = [column.name for column in listing.columns]
    column_styles = [column.style for column in listing.columns]
    texts = [[text for text, _ in row] for row in listing.rows]
    widths = [max(map(len, column)) for column in zip(header, *texts, strict=True)]
    total = sum(widths) + 3 * len(widths) + 1
    if total > width or len(listing.title) > total:
        return None
    right = [column.right for column in listing.columns]

    def paint(text: str, style: str) -> str:
        return f"\x1b[{SGR[style]}m{text}\x1b[0m" if colour and style else text

    def rule(left: str, line: str, cross: str, end: str) -> str:
        return left + cross.join(line * (w + 2) for w in widths) + end

    def cells(edge: str, row: Sequence[Cell], styles: Sequence[str]) -> str:
        """A row of cells between ``edge`` s: each cell padded with a space
        on each side in its column's style (``styles``), its text in the
        column's style or else its own."""
        drawn = []
        for i, (text, own) in enumerate(row):
            padded = text.rjust(widths[i]) if right[i] else text.ljust(widths[i])
            space = paint(" ", styles[i])
            drawn.append(f"{space}{paint(padded, styles[i] or own)}{space}")
        return edge + edge.join(drawn) + edge

    # rich's HEAVY_HEAD box; the title in italic ("table.title"), the header
    # in bold ("table.header")
    lines = [
        *([paint(listing.title.ljust(total), "italic")] if listing.title else []),
        rule("┏", "━", "┳", "┓"),
        cells("┃", [(name, "") for name in header], ["bold"] * len(header)),
        rule("┡", "━", "╇", "┩"),
        *(cells("│", row, column_styles) for row in listing.rows),
        rule("└", "─", "┴", "┘"),
    ]
    return "\n".join(lines) + "\n"


def _drawable(listing: Listing) -> bool:
    """Whether :func:`plain` draws ``listing`` as rich does, if it fits."""
    header = [column.name for column in listing.columns]
    texts = [text for row in listing.rows for text, _ in row]
    for text in (listing.title, *header, *texts):
        if not (text.isascii() and text.isprintable() and text.strip(" ") == text):
            return False
    styles = [column.style for column in listing.columns]
    return all(column in SGR for column in styles) and all(
        own in SGR and not (own and styles[i])
        for row in listing.rows
        for i, (_, own) in enumerate(row)
    )
