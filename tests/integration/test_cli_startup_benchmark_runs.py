"""``benchmarks/cli_startup.py`` runs end to end; nothing here is about speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cli_startup.py"


def test_startup_benchmark_prints_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--runs", "1", "--no-postgres", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "load average" in done.stdout
    assert "target: help under 150 ms" in done.stdout
    report = json.loads(out.read_text())
    rows = {r["key"]: r["wall_ms"] for r in report["results"]}
    assert sorted(rows) == [
        "floor-help",
        "floor-help-rich",
        "floor-list",
        "help",
        "list-sqlite",
        "python",
    ]
    assert all(ms > 0 for ms in rows.values()), rows
