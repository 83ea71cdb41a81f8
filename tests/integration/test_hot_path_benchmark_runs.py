"""The hot-path benchmark runs end to end; nothing here is about speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "hot_path.py"


def test_hot_path_prints_and_writes_a_row_each(tmp_path: Path) -> None:
    out = tmp_path / "hot.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--n",
            "20",
            "--repeats",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = {r["key"]: r for r in json.loads(out.read_text())["results"]}
    assert {"engine", "memory", "locked", "floor"} <= set(rows)
    assert all(r["sagas_per_s"] > 0 for r in rows.values())
    assert "vs floor" in done.stdout
    assert "load average" in done.stdout
