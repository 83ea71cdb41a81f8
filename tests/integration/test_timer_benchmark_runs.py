"""The durable-timers benchmark runs end to end with a tiny workload; nothing
here is about speed."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale_timers.py"
TINY = ["--n", "300", "--rate", "200", "--seconds", "0.5", "--idle", "0.5"]
LABELS = ["claim, nothing due, ms", "idle worker CPU", "lateness p99, s"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


def check_report(done: subprocess.CompletedProcess[str], out: Path) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    for label in LABELS:
        assert label in done.stdout, done.stdout
    assert "load average (1 min), start -> end" in done.stdout
    figures = json.loads(out.read_text())["figures"]
    assert figures["due"] == 100
    assert figures["fired"] == 100  # the worker fired every timer
    assert figures["claim_ms"] > 0
    assert figures["late_p99_s"] >= figures["late_p50_s"]


def test_timer_benchmark_runs_on_sqlite(tmp_path: Path) -> None:
    out = tmp_path / "timers.json"
    check_report(run(*TINY, "--json", str(out)), out)


@pytest.mark.postgres
def test_timer_benchmark_runs_on_postgres(tmp_path: Path, pg_template: str) -> None:
    out = tmp_path / "timers.json"
    name = f"bench_timers_{uuid.uuid4().hex[:8]}"
    args = ["--store", "postgres", "--dsn", POSTGRES_URL, "--db-name", name]
    check_report(run(*TINY, *args, "--json", str(out)), out)


def test_bad_arguments_exit_2_with_a_reason() -> None:
    done = run("--n", "0")
    assert done.returncode == 2
    assert "--n, --rate, --seconds, --idle and --grace must be > 0" in done.stderr
