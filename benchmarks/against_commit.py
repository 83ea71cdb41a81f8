"""Run a benchmark script against this tree and an earlier commit, alternating.

The script is always this tree's (the same workload); only the library under
it changes: ``src/`` of ``REV`` (taken with ``git archive``) or this tree's
(copied when the run starts), put first on ``PYTHONPATH``. The two sides
take turns, starting side flipped each round, so a load that comes and goes
on the machine hits both alike.
Every row of every run is read from the script's ``--json`` output (its
``sagas_per_s``, or ``per_s`` for a row that times a call, such as the reads
of ``scale_sagas.py``); the table gives, per row, the median over rounds of
each side's figure and the ratio this tree / ``REV`` (higher is faster);
rows that report ``cpu_us_per_saga`` also get each side's median CPU time
per saga and its ratio this tree / ``REV`` (lower is cheaper).
Peer rows (DBOS, Celery, the floor) run on both sides too: they change with
the load only, so their ratio shows how much of a difference is noise.
Where rows carry them (``remote_throughput.py``), a second table gives each
side's median ratio to the floor measured in the same run, and its CPU per
saga (this process + the service processes).

::

    python benchmarks/against_commit.py HEAD~1 benchmarks/postgres_throughput.py \
        --rounds 3 -- --n 500 --repeats 3
    python benchmarks/against_commit.py main benchmarks/remote_throughput.py \
        -- --n 200 --repeats 3

Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier commit (any git revision)")
    parser.add_argument("script", type=Path, help="a benchmarks/*.py with --json")
    parser.add_argument("--rounds", type=int, default=3, help="default 3")
    raw = sys.argv[1:] if argv is None else argv
    ours, theirs = _split(raw)
    args = parser.parse_args(ours)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args, theirs


def _split(raw: list[str]) -> tuple[list[str], list[str]]:
    """This script's arguments, and those after ``--`` for the benchmark."""
    if "--" in raw:
        at = raw.index("--")
        return raw[:at], raw[at + 1 :]
    return raw, []


def export_src(rev: str, into: Path) -> Path:
    """``src/`` of ``rev`` under ``into``; exits 2 with a reason if git refuses."""
    done = subprocess.run(  # noqa: S603 - git with a revision the user names
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "src"],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        sys.exit(
            f"against_commit: cannot read {rev!r}: {reason[-1] if reason else '?'}"
        )
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def commit_of(rev: str) -> str:
    out = subprocess.run(  # noqa: S603 - git with a revision the user names
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or rev


def run_side(script: Path, args: list[str], src: Path, out: Path) -> dict[str, object]:
    env = dict(
        os.environ, PYTHONPATH=f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    )
    cmd = [sys.executable, str(script), *args, "--json", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0 or not out.exists():
        sys.stderr.write(done.stdout + done.stderr)
        sys.exit(f"against_commit: {script.name} failed with {src}")
    report: dict[str, object] = json.loads(out.read_text())
    report["load"] = f"{os.getloadavg()[0]:.2f}"
    return report


def main(argv: list[str] | None = None) -> int:
    args, script_args = parse_args(argv)
    script = args.script.resolve()
    base_name, head_name = commit_of(args.rev), "this tree"
    figures: dict[str, dict[str, list[float]]] = {}
    extras: dict[str, dict[str, list[tuple[float, float]]]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}
    loads: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sagakit-against-") as tmp:
        # this tree's src is copied too: edits made during a long run stay out
        head_src = Path(tmp) / "head" / "src"
        shutil.copytree(
            ROOT / "src", head_src, ignore=shutil.ignore_patterns("__pycache__")
        )
        sides = {
            base_name: export_src(args.rev, Path(tmp) / "base"),
            head_name: head_src,
        }
        order = [base_name, head_name]
        for round_ in range(args.rounds):
            for side in order if round_ % 2 == 0 else order[::-1]:
                out = Path(tmp) / f"{round_}-{len(loads)}.json"
                report = run_side(script, script_args, sides[side], out)
                loads.append(f"{side}: {report['load']}")
                print(f"round {round_ + 1}, {side}: done (load {report['load']})")
                for row in report["results"]:  # type: ignore[attr-defined]
                    key = f"{row['key']} ({row['library']})"
                    figure = row.get("sagas_per_s", row.get("per_s"))
                    if figure is not None:
                        figures.setdefault(key, {}).setdefault(side, []).append(figure)
                    if row.get("ratio_vs_floor") is not None:
                        spent = row.get("cpu_ms_here", 0.0) + row.get(
                            "cpu_ms_services", 0.0
                        )
                        pair = (row["ratio_vs_floor"], spent)
                        extras.setdefault(key, {}).setdefault(side, []).append(pair)
                    used = row.get("cpu_us_per_saga")
                    if used is not None:
                        cpu.setdefault(key, {}).setdefault(side, []).append(used)
    print()
    print(f"{script.name} {' '.join(script_args)}; {args.rounds} round(s) per side")
    print(f"{'row':<34} {base_name:>12} {head_name:>12} {'ratio':>7}")
    for key, by_side in figures.items():
        print(f"{key:<34} {_compare(by_side, base_name, head_name)}")
    if cpu:
        print()
        print("CPU us per saga (this process); lower is cheaper")
        print(f"{'row':<34} {base_name:>12} {head_name:>12} {'ratio':>7}")
        for key, by_side in cpu.items():
            print(f"{key:<34} {_compare(by_side, base_name, head_name)}")
    print(
        "sagas/s (calls/s for a row that times a call), median over rounds of "
        "each run's median; load average (1 min) after each run: " + ", ".join(loads)
    )
    if extras:
        print()
        print(
            f"{'row':<34} {'vs floor, ' + base_name:>24} {'vs floor, ' + head_name:>20}"
        )
        for key, by_side in extras.items():
            cells = []
            for side in (base_name, head_name):
                pairs = by_side.get(side, [])
                ratio_ = statistics.median(p[0] for p in pairs) if pairs else 0.0
                cpu_ = statistics.median(p[1] for p in pairs) if pairs else 0.0
                cells.append(f"{ratio_:.2f}x ({cpu_:.2f} ms CPU)")
            print(f"{key:<34} {cells[0]:>24} {cells[1]:>20}")
        print(
            "ratio to the floor of the same run, and CPU ms per saga of this "
            "process + the service processes, medians over rounds"
        )
    return 0


def _compare(by_side: dict[str, list[float]], base_name: str, head_name: str) -> str:
    """Each side's median and the ratio head / base."""
    base = statistics.median(by_side.get(base_name, [0.0]))
    head = statistics.median(by_side.get(head_name, [0.0]))
    ratio = f"{head / base:.2f}x" if base else "n/a"
    return f"{base:>12,.1f} {head:>12,.1f} {ratio:>7}"


if __name__ == "__main__":
    sys.exit(main())
