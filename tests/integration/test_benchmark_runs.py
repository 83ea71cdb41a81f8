"""The throughput benchmark runs end to end; nothing here is about speed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sqlite_throughput.py"
SAGA_PY_ROWS = ["a", "f-saga-py"]
SAGAKIT_ROWS = [
    f"{key}-{steps}"
    for key in ("b", "c", "d", "e", "h", "i", "j", "f-memory", "f-sqlite", "g")
    for steps in ("async", "sync")
] + [f"floor-{mode}-{path}" for mode in ("seq", "conc") for path in ("ok", "fail")]
SAGAKIT_ROWS += ["floor-full-seq-ok", "floor-full-conc-ok"]
SAGAKIT_ROWS += ["floor-writes-seq-ok", "floor-writes-seq-fail"]
ARGS = ["--n", "50", "--repeats", "1"]
# Runs the script with `import saga` failing, as if the bench extra were missing.
WITHOUT_SAGA_PY = (
    "import runpy, sys; sys.modules['saga'] = None; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


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


def saga_py_installed() -> bool:
    probe = run("-c", "import saga")
    return probe.returncode == 0


def test_benchmark_prints_a_row_per_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run(str(SCRIPT), *ARGS, "--json", str(out))

    assert done.returncode == 0, done.stderr
    expected = SAGAKIT_ROWS + (SAGA_PY_ROWS if saga_py_installed() else [])
    rows = table_rows(done.stdout)
    assert sorted(rows) == sorted(expected)
    assert all(rate > 0 for rate in rows.values()), rows
    assert re.search(r"^target: .*: (PASS|MISS)$", done.stdout, re.MULTILINE)
    # sagakit against the hand-written floor, one at a time and in flight
    floor_targets = re.findall(r"^target: .* floor on (\S+) ", done.stdout, re.M)
    assert floor_targets == ["c-async", "e-async", "f-sqlite-async", "g-async"]
    # what a row without a store says of them, and group commit on FULL
    ceilings = re.findall(
        r"^ceiling: (\S+) <= .* (?:within|out of) reach", done.stdout, re.M
    )
    assert ceilings == ["c-async"] * 2 + ["f-sqlite-async"] * 2 + ["e-async", "g-async"]
    # one at a time, the engine's CPU plus the floor's own writes
    assert (
        len(re.findall(r"^ceiling: \S+ <= about .* writes alone", done.stdout, re.M))
        == 2
    )
    full = re.findall(
        r"^group commit .*: (\S+) \(SQLite FULL.* ([\d.]+)x the FULL floor$",
        done.stdout,
        re.M,
    )
    assert [row for row, _ in full] == ["d-async", "j-async"]
    assert re.search(r"load average [\d.]+ at the start", done.stdout)
    report = json.loads(out.read_text())
    assert sorted(r["key"] for r in report["results"]) == sorted(expected)


def test_benchmark_runs_without_saga_py() -> None:
    done = run("-c", WITHOUT_SAGA_PY, str(SCRIPT), *ARGS)

    assert done.returncode == 0, done.stderr
    assert "saga-py is not importable" in done.stdout
    rows = table_rows(done.stdout)
    assert sorted(rows) == sorted(SAGAKIT_ROWS)
    assert all(rate > 0 for rate in rows.values()), rows


WORKFLOW_SCRIPT = SCRIPT.with_name("workflow_throughput.py")
WORKFLOW_ROWS = {
    "floor-seq": "floor",
    "wf-seq": "sagakit",
    "floor-conc": "floor",
    "wf-conc": "sagakit",
    "wf-spread": "sagakit",
}


@pytest.mark.parametrize(
    ("store", "args"),
    [
        ("sqlite", ["--n", "30"]),
        # a pool of --concurrency connections for floor-conc: kept small
        pytest.param(
            "postgres",
            ["--n", "20", "--concurrency", "5", "--dsn", POSTGRES_URL],
            marks=pytest.mark.postgres,
        ),
    ],
    ids=["sqlite", "postgres"],
)
def test_workflow_benchmark_writes_a_row_per_shape(
    store: str, args: list[str], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if store == "postgres":
        request.getfixturevalue("pg_template")  # skips without a server
        args = [*args, "--db-prefix", f"wf_bench_{uuid.uuid4().hex[:8]}"]
    out = tmp_path / "workflow.json"
    done = run(
        str(WORKFLOW_SCRIPT),
        *("--store", store, *args, "--repeats", "1", "--json", str(out)),
    )

    assert done.returncode == 0, done.stderr
    assert re.search(r"load average \(1 min\) [\d.]+ at the start", done.stdout)
    title = {"sqlite": " on SQLite (", "postgres": " on PostgreSQL "}[store]
    assert title in done.stdout.splitlines()[0]
    report = json.loads(out.read_text())
    assert report["meta"]["store"] == store
    rows = {row["key"]: row for row in report["results"]}
    assert {key: row["library"] for key, row in rows.items()} == WORKFLOW_ROWS
    for key, row in rows.items():
        assert row["sagas_per_s"] > 0, key
        assert row["cpu_us_per_saga"] > 0, key
        assert row["commits_per_instance"] > 0, key
        assert row["results_per_commit"] > 0, key
        if row["library"] == "floor":
            assert row["ratio_vs_floor"] is None, key
        else:
            assert row["ratio_vs_floor"] > 0, key
        assert key in done.stdout
    assert set(report["load_average"]) == {"start", "end"}
