"""The PostgreSQL throughput benchmark runs end to end; nothing here is about speed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "postgres_throughput.py"
SAGAKIT_ROWS = ["sk-seq-ok", "sk-seq-fail", "sk-conc-ok", "sk-conc-fail"]
FLOOR_ROWS = ["floor-seq-ok", "floor-seq-fail", "floor-conc-ok", "floor-conc-fail"]
DBOS_ROWS = ["dbos-seq-ok", "dbos-seq-fail", "dbos-conc-ok", "dbos-conc-fail"]


def table_rows(stdout: str) -> dict[str, float]:
    """Row key -> sagas/s, read from the printed table (cells are 2+ spaces apart)."""
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("scenario"))
    column = re.split(r"\s{2,}", header.strip()).index("sagas/s")
    rows: dict[str, float] = {}
    for line in lines[lines.index(header) + 2 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        assert cells[0] not in rows, f"row {cells[0]} printed twice"
        rows[cells[0]] = float(cells[column].replace(",", ""))
    return rows


def test_postgres_benchmark_prints_a_row_per_scenario(
    pg_template: str, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    prefix = f"sagakit_bench_{uuid.uuid4().hex[:8]}"  # apart from a manual run's
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--n", "10", "--repeats", "1", "--concurrency", "5"),
            *("--dsn", POSTGRES_URL, "--db-prefix", prefix, "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout)
    assert all(rows.get(key, 0) > 0 for key in SAGAKIT_ROWS + FLOOR_ROWS), rows
    # DBOS rows are there unless the script said why not
    if "note: dbos" not in done.stdout and "note: DBOS" not in done.stdout:
        assert sorted(rows) == sorted(SAGAKIT_ROWS + FLOOR_ROWS + DBOS_ROWS)
    floor_targets = re.findall(r"^target: .* floor on (\S+) ", done.stdout, re.M)
    assert sorted(floor_targets) == sorted(k.removeprefix("sk-") for k in SAGAKIT_ROWS)
    assert re.search(r"^target: .*: (PASS|MISS|n/a)$", done.stdout, re.MULTILINE)
    report = json.loads(out.read_text())
    assert sorted(r["key"] for r in report["results"]) == sorted(rows)
    sagakit = [r for r in report["results"] if r["library"] == "sagakit"]
    assert all(r["ratio_vs_floor"] > 0 for r in sagakit)
