"""The scale benchmark runs end to end with a tiny store, on SQLite and on
PostgreSQL; nothing here is about speed (``benchmarks/scale_sagas.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale_sagas.py"
TINY = [
    *("--n", "400", "--unfinished", "30", "--other", "20", "--repeats", "1"),
    *("--throughput-n", "10", "--concurrency", "5", "--rounds", "1"),
]
READS = [
    "floor-get",
    "show-prefix",
    "show-missing",
    "count",
    "count-name",
    "list",
    "list-status",
    "list-status-rare",
    "list-status-empty",
    "list-name",
    "list-name-status",
    "list-name-empty-status",
    "list-name-unknown",
    "list-before",
    "list-waiting",
]
THROUGHPUT = [
    *("seq-full", "seq-empty", "seq-bare"),
    *("conc-full", "conc-empty", "conc-bare"),
]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *TINY, *args],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )


def check(done: subprocess.CompletedProcess[str], report: Path) -> None:
    assert done.returncode == 0, done.stderr
    printed = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    assert all(key in printed for key in READS), done.stdout
    assert "recover():" in done.stdout
    assert all(row in printed for row in ("seq", "conc")), done.stdout
    assert "load average" in done.stdout
    rows = json.loads(report.read_text())["results"]
    assert [r["key"] for r in rows] == [*READS, "recover", *THROUGHPUT]


def test_scale_benchmark_runs_on_sqlite(tmp_path: Path) -> None:
    report = tmp_path / "scale.json"
    check(
        run("--store", "sqlite", "--dir", str(tmp_path), "--json", str(report)), report
    )


@pytest.mark.postgres
def test_scale_benchmark_runs_on_postgres(pg_template: str, tmp_path: Path) -> None:
    report = tmp_path / "scale.json"
    prefix = f"sagakit_scale_{uuid.uuid4().hex[:8]}"  # apart from a manual run's
    done = run(
        *("--store", "postgres", "--dsn", POSTGRES_URL, "--db-prefix", prefix),
        *("--json", str(report)),
    )
    check(done, report)


@pytest.mark.postgres
def test_wal_by_relation_runs(pg_url: str, tmp_path: Path) -> None:
    """``wal_by_relation.py`` reads the WAL a few sagas wrote, by relation:
    the saga table and the history's index among them."""
    report = tmp_path / "wal.json"
    script = SCRIPT.parent / "wal_by_relation.py"
    done = subprocess.run(
        [
            *(sys.executable, str(script), "--db", pg_url),
            *("--n", "20", "--concurrency", "5", "--json", str(report)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "KB a saga" in done.stdout
    found = json.loads(report.read_text())
    assert found["sagas"] == 20
    assert found["wal_bytes_per_saga"] > 0
    relations = {r["relation"] for r in found["relations"]}
    assert {"sagakit_saga", "sagakit_step_history_saga_time"} <= relations, relations
