"""The live progress line of long commands: drawn on a terminal, erased
after; nothing at all when the output is piped."""

from __future__ import annotations

import io
import re

from rich.console import Console

from sagakit.cli.progress import Progress, live_progress


def console(*, terminal: bool) -> tuple[Console, io.StringIO]:
    sink = io.StringIO()
    return Console(file=sink, force_terminal=terminal, width=100), sink


def test_a_terminal_gets_a_bar_of_what_is_done() -> None:
    made, sink = console(terminal=True)
    asked: list[int] = []

    def describe() -> Progress:
        asked.append(1)
        return Progress("recovering (batch 1)", 3, 10)

    with live_progress(made, describe):
        made.print("batch 1: resumed 3 saga(s)")
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", sink.getvalue())  # no colours
    assert asked
    assert "recovering (batch 1)" in shown
    assert "3/10 saga(s)" in shown
    assert "━" in shown  # the bar
    assert "batch 1: resumed 3 saga(s)" in shown  # printed above the line


def test_without_a_total_it_counts() -> None:
    made, sink = console(terminal=True)
    with live_progress(made, lambda: Progress("working until idle", 7, unit="x")):
        pass
    assert "working until idle 7 x" in sink.getvalue()


def test_piped_output_gets_nothing() -> None:
    made, sink = console(terminal=False)
    asked: list[int] = []

    def describe() -> Progress:
        asked.append(1)
        return Progress("recovering", 1, 2)

    with live_progress(made, describe):
        made.print("batch 1: resumed 1 saga(s)")
    assert sink.getvalue() == "batch 1: resumed 1 saga(s)\n"
    assert asked == []
