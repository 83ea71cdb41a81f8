"""The MySQL-next-to-PostgreSQL benchmark runs end to end; nothing here is
about speed."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import MYSQL_URL, POSTGRES_URL, MySQLDatabases

pytestmark = [pytest.mark.mysql, pytest.mark.postgres, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "mysql_throughput.py"


def test_mysql_benchmark_prints_a_row_per_scenario(
    mysql_databases: MySQLDatabases, pg_template: str, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    prefix = f"sagakit_bench_{uuid.uuid4().hex[:8]}"  # apart from a manual run's
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--n", "6", "--repeats", "1", "--concurrency", "3"),
            *("--mysql-url", MYSQL_URL, "--pg-url", POSTGRES_URL),
            *("--db-prefix", prefix, "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    rows = {r["key"]: r for r in json.loads(out.read_text())["rows"]}
    for db in ("mysql", "pg"):
        for library in ("sk", "floor"):
            for pair in ("seq-ok", "seq-fail", "conc-ok", "conc-fail"):
                assert rows[f"{db}-{library}-{pair}"]["sagas_per_s"] > 0
    assert "sagakit/floor" in done.stdout
    assert "load average at the start" in done.stdout
    assert "load average at the end" in done.stdout
