"""``benchmarks/worker_throughput.py`` runs end to end; nothing here is about
speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "worker_throughput.py"


def test_worker_benchmark_prints_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--n", "20", "--repeats", "1", "--max-active", "2,5", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "| worker-2 " in done.stdout
    assert "load average" in done.stdout
    report = json.loads(out.read_text())
    rows = {r["key"]: r["sagas_per_s"] for r in report["results"]}
    assert sorted(rows) == ["inproc-2", "inproc-5", "worker-2", "worker-5"]
    assert all(rate > 0 for rate in rows.values()), rows
