"""``benchmarks/scale.py`` dispatches to the scale benchmarks; nothing here is
about speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )


def test_help_names_both_parts() -> None:
    done = run("--help")
    assert done.returncode == 0
    assert "scale.py sagas" in done.stdout
    assert "scale.py timers" in done.stdout


def test_an_unknown_part_is_a_one_line_error() -> None:
    done = run("nope")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "scale.py: unknown part 'nope': use one of sagas, timers"
    ]


def test_timers_run_through_the_dispatcher() -> None:
    done = run(
        "timers", "--n", "200", "--rate", "100", "--seconds", "0.5", "--idle", "0.3"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "== timers (scale_timers.py)" in done.stdout
    assert "idle worker CPU" in done.stdout
