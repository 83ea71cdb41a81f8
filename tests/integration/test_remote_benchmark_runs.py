"""The remote (RabbitMQ) benchmark runs end to end; nothing here is about speed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.rabbitmq,
    pytest.mark.celery,
    pytest.mark.slow,
    pytest.mark.timeout(200),  # three more participant processes with --batch
]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "remote_throughput.py"
ROWS = [
    *("sk-seq", "skb-seq", "celery-seq", "floor-seq"),
    *("sk-conc", "skb-conc", "celery-conc", "floor-conc"),
]


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Row key -> its cells, read from the printed table (cells 2+ spaces apart)."""
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("scenario"))
    rows: dict[str, list[str]] = {}
    for line in lines[lines.index(header) + 2 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        assert cells[0] not in rows, f"row {cells[0]} printed twice"
        rows[cells[0]] = cells
    return rows


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_remote_benchmark_prints_a_row_per_scenario(
    rabbitmq_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("celery")
    out = tmp_path / "remote.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--n", "5", "--repeats", "1", "--concurrency", "5", "--batch"),
            *("--broker", rabbitmq_url, "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    rows = table_rows(done.stdout)
    assert sorted(rows) == sorted(ROWS)
    for key, cells in rows.items():
        sagas_per_s, messages_per_saga = number(cells[4]), number(cells[6])
        assert sagas_per_s > 0, key
        assert messages_per_saga > 0, key
        # sagakit/floor: a ratio on the sagakit rows, "-" on the others
        assert cells[8].endswith("x") == key.startswith("sk"), cells
        here, services = cells[9].split("+")  # CPU ms per saga
        assert number(here) >= 0, cells
        assert number(services) >= 0, cells
    for key in ("floor-seq", "floor-conc"):
        assert number(rows[key][6]) == 6, rows[key]  # 3 requests + 3 echoes
    for key in ("sk-seq", "sk-conc", "skb-seq", "skb-conc"):
        assert number(rows[key][6]) >= 6, rows[key]  # 3 commands + 3 replies
    targets = re.findall(r"^target: .*: (PASS|MISS)$", done.stdout, re.MULTILINE)
    assert len(targets) == 4  # vs Celery and vs the floor, both modes
    ceilings = re.findall(r"^ceiling: .*\d\.\d\dx", done.stdout, re.MULTILINE)
    assert len(ceilings) >= 1, done.stdout
    report = json.loads(out.read_text())
    assert sorted(r["key"] for r in report["results"]) == sorted(ROWS)
    floor = {r["key"]: r for r in report["results"] if r["library"] == "floor"}
    assert sorted(floor) == ["floor-conc", "floor-seq"]
    assert all(r["sagas_per_s"] > 0 for r in floor.values())
    assert set(report["ceiling_vs_celery"]) == {"seq", "conc"}
    # the durable writes on a saga's path: the orchestrator's saves, timed in
    # sk-seq only, and a participant's inbox work, timed once
    writes = re.findall(
        r"^ceiling: one at a time a saga waits for its durable writes.*"
        r"about (\d\.\d\d)x the floor",
        done.stdout,
        re.MULTILINE,
    )
    assert len(writes) == 1, done.stdout
    assert 0 < float(writes[0]) < 1
    by_key = {r["key"]: r for r in report["results"]}
    assert by_key["sk-seq"]["write_ms"] > 0
    assert all(r["write_ms"] == 0 for k, r in by_key.items() if k != "sk-seq")
    assert report["inbox_step_us"] > 0
