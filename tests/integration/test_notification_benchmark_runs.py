"""``benchmarks/notification_triggers.py`` runs end to end (on SQLite);
nothing here is about speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "notification_triggers.py"


def test_notification_trigger_benchmark_prints_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    environ = {k: v for k, v in os.environ.items() if k != "SAGAKIT_BENCH_POSTGRES"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "20", "--rounds", "2", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=environ,
    )
    assert done.returncode == 0, done.stderr
    assert "sqlite    save  cpu   with triggers" in done.stdout
    assert "load average at end" in done.stdout
    rows = json.loads(out.read_text())["results"]
    assert sorted((r["key"], r["library"]) for r in rows) == [
        ("sqlite-end", "floor"),
        ("sqlite-end", "sagakit"),
        ("sqlite-save", "floor"),
        ("sqlite-save", "sagakit"),
    ]
    assert all(r["per_s"] > 0 for r in rows)
