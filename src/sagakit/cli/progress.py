"""A live progress line for long commands (``recover``, ``worker
--until-idle``), on a terminal only.

The command says what it is doing through a function the line calls a few
times a second (from rich's refresh thread): a label, how much is done and,
when known, of how much (then a bar is drawn). Piped or redirected, nothing
is drawn: the command's own lines are all its output. The line is erased
when the work ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

REFRESH = 4
"""Redraws a second."""
BAR_WIDTH = 30


@dataclass(frozen=True, slots=True)
class Progress:
    label: str
    done: int
    total: int | None = None
    unit: str = "saga(s)"


class _Line:
    """What rich's Live draws: asks ``describe`` each time."""

    def __init__(self, describe: Callable[[], Progress]) -> None:
        self.describe = describe
        self.started = time.monotonic()

    def __rich__(self) -> RenderableType:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        now = self.describe()
        elapsed = int(time.monotonic() - self.started)
        clock = f"{elapsed // 60}:{elapsed % 60:02d}"
        line = Table.grid(padding=(0, 1))
        if now.total is None:
            line.add_row(now.label, f"{now.done} {now.unit}", clock)
            return line
        bar = ProgressBar(
            total=max(now.total, 1), completed=min(now.done, now.total), width=BAR_WIDTH
        )
        line.add_row(now.label, bar, f"{now.done}/{now.total} {now.unit}", clock)
        return line


@contextmanager
def live_progress(console: Console, describe: Callable[[], Progress]) -> Iterator[None]:
    """Draw ``describe()`` on ``console`` while the block runs, if it is a
    terminal; erase it after."""
    if not console.is_terminal or console.is_dumb_terminal:
        yield
        return
    from rich.live import Live

    with Live(
        _Line(describe),
        console=console,
        transient=True,
        refresh_per_second=REFRESH,
    ):
        yield
