"""Start-up time of the ``sagakit`` command, against a hand-written floor.

Each row runs a command in a fresh interpreter (``python -m
sagakit.cli.main ...``, what the ``sagakit`` script runs) ``--runs`` times and
prints the median wall time and the median CPU time (user + system) of the
process. Rows:

python          ``python -c pass``: the interpreter and its site packages
floor-help      a hand-written typer app (one ``list`` command, rich output,
                click's plain help as sagakit's): ``--help``; what any typer
                command pays
floor-help-rich the same with typer's default rich help (panels): the cost
                of rich help, which sagakit no longer pays
floor-list      the same app listing the ``sagakit_saga`` table of the empty
                SQLite file with ``sqlite3``: a floor for ``list``
help            ``sagakit --help``
list-sqlite     ``sagakit --db EMPTY.db list``: a migrated SQLite file with
                no saga
list-postgres   ``sagakit --db postgresql://.../bench_cli_PID list``: a fresh
                migrated database (skipped if the server is unreachable)

With ``--against REV`` every row also runs over ``src/`` of that revision
(``git archive``, nothing checked out), alternating with this tree run by run,
and the table gives both and the ratio. Bytecode is cached (in a temporary
``PYTHONPYCACHEPREFIX``) and each row warms up twice first, as an installed
package would run. Numbers are printed, never asserted.

    python benchmarks/cli_startup.py [--runs 20] [--against REV] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from against_commit import commit_of, export_src

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 150.0  # sagakit --help and list, median wall time
DEFAULT_DSN = os.environ.get(
    "SAGAKIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
WARM_UP = 2
HERE = "this tree"

FLOOR_APP = '''
import os
import sqlite3
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

MARKUP = os.environ.get("FLOOR_MARKUP") or None  # sagakit's: click's plain help
app = typer.Typer(add_completion=False, rich_markup_mode=MARKUP)


@app.callback()
def main(db: Annotated[str, typer.Option("--db")] = "sagakit.db") -> None:
    """A hand-written floor: one command, rich output."""


@app.command("list")
def list_rows(ctx: typer.Context, limit: int = 50) -> None:
    """List the sagakit_saga table."""
    path = ctx.find_root().params["db"]
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT saga_id, saga_name, status FROM sagakit_saga ORDER BY created_at DESC "
        "LIMIT ?", (limit,)
    ).fetchall()
    table = Table(title=f"{len(rows)} saga(s)")
    for column in ("id", "saga", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(*map(str, row))
    Console().print(table)


app()
'''

COUNT_MODULES = (
    "import atexit, runpy, sys; "
    "atexit.register(lambda: sys.stderr.write(f'\\nMODULES {len(sys.modules)}\\n')); "
    "sys.argv = ['sagakit', *sys.argv[1:]]; "
    "runpy.run_module('sagakit.cli.main', run_name='__main__', alter_sys=True)"
)


@dataclass
class Row:
    key: str
    args: list[str]  # after the interpreter
    sagakit: bool  # runs over a side's src (else: the same for every side)
    env: dict[str, str] = field(default_factory=dict)  # added to the side's
    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    modules: dict[str, int] = field(default_factory=dict)


class RunFailed(Exception):
    """A command exited non-zero; the message is its stderr."""


def timed(command: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run; ``RunFailed`` if it failed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - this interpreter, our arguments
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise RunFailed(lines[-1] if lines else f"exit status {done.returncode}")
    return wall, cpu


def environment(src: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONPYCACHEPREFIX=str(cache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # cached bytecode, as installed
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env["COLUMNS"] = "100"
    return env


def module_count(args: list[str], env: dict[str, str]) -> int:
    cli_args = args[args.index("sagakit.cli.main") + 1 :]
    done = subprocess.run(  # noqa: S603 - this interpreter, our arguments
        [sys.executable, "-c", COUNT_MODULES, *cli_args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [x for x in done.stderr.splitlines() if x.startswith("MODULES ")]
    return int(lines[-1].split()[1]) if lines else -1


def postgres_database(dsn: str, name: str, *, create: bool) -> str | None:
    """Create (or drop) database ``name`` next to ``dsn``; its URL, or None
    when the server cannot be reached."""
    verb = (
        f'CREATE DATABASE "{name}"'
        if create
        else f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    )
    script = (
        "import asyncio, asyncpg, sys\n"
        "async def go():\n"
        "    conn = await asyncpg.connect(sys.argv[1], timeout=5)\n"
        "    try:\n"
        "        await conn.execute(sys.argv[2])\n"
        "    finally:\n"
        "        await conn.close()\n"
        "asyncio.run(go())\n"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, our arguments
        [sys.executable, "-c", script, dsn, verb],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["?"])[-1]
        print(f"note: PostgreSQL at {urlsplit(dsn).hostname}: {reason}")
        return None
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def migrate(url: str, env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "sagakit.cli.main", "--db", url, "migrate"]
    try:
        timed(cmd, env)
    except RunFailed as exc:
        print(f"note: cannot migrate {url.rsplit('@', maxsplit=1)[-1]}: {exc}")


def rows_for(tmp: Path, pg_url: str | None) -> list[Row]:
    floor = tmp / "floor_app.py"
    floor.write_text(textwrap.dedent(FLOOR_APP))
    db = str(tmp / "empty.db")
    cli = [sys.executable, "-m", "sagakit.cli.main"]
    rows = [
        Row("python", [sys.executable, "-c", "pass"], sagakit=False),
        Row("floor-help", [sys.executable, str(floor), "--help"], sagakit=False),
        Row(
            "floor-help-rich",
            [sys.executable, str(floor), "--help"],
            sagakit=False,
            env={"FLOOR_MARKUP": "rich"},
        ),
        Row(
            "floor-list",
            [sys.executable, str(floor), "--db", db, "list"],
            sagakit=False,
        ),
        Row("help", [*cli, "--help"], sagakit=True),
        Row("list-sqlite", [*cli, "--db", db, "list"], sagakit=True),
    ]
    if pg_url is not None:
        rows.append(Row("list-postgres", [*cli, "--db", pg_url, "list"], sagakit=True))
    return rows


def measure(rows: list[Row], envs: dict[str, dict[str, str]], runs: int) -> list[Row]:
    """Time every row; the rows that ran (one that fails is left out, and
    the reason printed: a database restarted by another process, say)."""
    sides = list(envs)
    ok = list(rows)
    for i in range(-WARM_UP, runs):  # negative: warm-up runs, not kept
        order = sides if i % 2 == 0 else sides[::-1]
        for row in list(ok):
            try:
                for side in order if row.sagakit else sides[:1]:
                    if i == -WARM_UP and row.sagakit:
                        row.modules[side] = module_count(row.args, envs[side])
                    wall, cpu = timed(row.args, envs[side] | row.env)
                    if i >= 0:
                        row.wall.setdefault(side, []).append(wall)
                        row.cpu.setdefault(side, []).append(cpu)
            except RunFailed as exc:
                print(f"note: row {row.key} left out ({side}): {exc}")
                ok.remove(row)
    return ok


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(slow: float, fast: float) -> str:
    return f"{slow / fast:.2f}x" if fast else "n/a"


def table(rows: list[Row], sides: list[str]) -> list[str]:
    """One line per row and side. ``vs floor``: this tree's time over the
    floor's (wall / CPU); ``before/after``: the revision's over this tree's."""
    floors = {"help": "floor-help", "list-sqlite": "floor-list"}
    by_key = {r.key: r for r in rows}
    cells = ["row", "side", "wall ms", "cpu ms", "modules", "vs floor wall/cpu"]
    if len(sides) > 1:
        cells.append("before/after wall/cpu")
    widths = [15, 10, 7, 6, 7, 17, 21][: len(cells)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)),
        "| " + " | ".join("-" * w for w in widths),
    ]
    lines = [f"{line} |" for line in lines]
    for row in rows:
        for side in sides if row.sagakit else sides[:1]:
            wall, cpu = median(row.wall[side]), median(row.cpu[side])
            floor = by_key.get(floors.get(row.key, ""))
            vs_floor = "-"
            if floor is not None and side == HERE:
                floor_wall, floor_cpu = (
                    median(floor.wall[HERE]),
                    median(floor.cpu[HERE]),
                )
                vs_floor = f"{ratio(wall, floor_wall)} / {ratio(cpu, floor_cpu)}"
            count = row.modules.get(side, -1)
            values = [
                row.key,
                side if row.sagakit else "-",
                f"{wall:.0f}",
                f"{cpu:.0f}",
                str(count) if count >= 0 else "-",
                vs_floor,
            ]
            if len(sides) > 1:
                change = "-"
                if row.sagakit and side == HERE:
                    before = sides[1]
                    change = (
                        f"{ratio(median(row.wall[before]), wall)} / "
                        f"{ratio(median(row.cpu[before]), cpu)}"
                    )
                values.append(change)
            padded = [
                v.ljust(w) if i < 2 else v.rjust(w)
                for i, (v, w) in enumerate(zip(values, widths, strict=True))
            ]
            lines.append("| " + " | ".join(padded) + " |")
    return lines


def verdicts(rows: list[Row]) -> list[str]:
    out = []
    for row in rows:
        if row.sagakit:
            wall, cpu = median(row.wall[HERE]), median(row.cpu[HERE])
            verdict = "PASS" if wall < TARGET_MS else "MISS"
            out.append(
                f"target: {row.key} under {TARGET_MS:.0f} ms (this tree, median "
                f"wall): {wall:.0f} ms ({cpu:.0f} ms CPU): {verdict}"
            )
    return out


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per row")
    parser.add_argument("--against", metavar="REV", help="also time this revision")
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL server")
    parser.add_argument(
        "--no-postgres", action="store_true", help="skip the list-postgres row"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = load_average()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sagakit-cli-startup-") as name:
        tmp = Path(name)
        srcs = {HERE: ROOT / "src"}
        if args.against:
            srcs[commit_of(args.against)] = export_src(args.against, tmp / "base")
        envs = {
            side: environment(src, tmp / f"pycache-{i}")
            for i, (side, src) in enumerate(srcs.items())
        }
        pg_name = f"bench_cli_{os.getpid()}"
        pg_url = (
            None
            if args.no_postgres
            else postgres_database(args.dsn, pg_name, create=True)
        )
        try:
            rows = rows_for(tmp, pg_url)
            migrate(str(tmp / "empty.db"), envs[HERE])
            if pg_url is not None:
                migrate(pg_url, envs[HERE])
            rows = measure(rows, envs, args.runs)
        finally:
            if pg_url is not None:
                postgres_database(args.dsn, pg_name, create=False)
    sides = list(envs)
    print(
        f"sagakit start-up: median of {args.runs} run(s) per row after {WARM_UP} "
        f"warm-up(s), bytecode cached; python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs"
    )
    print()
    for line in table(rows, sides):
        print(line)
    load = load_average()
    elapsed = time.perf_counter() - started
    print(
        "ratios: wall time / CPU time (user + system); modules: sys.modules at "
        "exit. On a busy machine wall time waits for a core: read CPU time"
    )
    print(
        f"total time {elapsed:,.1f} s; load average {load_at_start} at the start, "
        f"{load} at the end"
    )
    for line in verdicts(rows):
        print(line)
    if args.json is not None:
        report = {
            "meta": {
                "runs": args.runs,
                "sides": sides,
                "load_average": {"start": load_at_start, "end": load},
            },
            "results": [
                {
                    "key": row.key,
                    "side": side,
                    "wall_ms": median(row.wall[side]),
                    "cpu_ms": median(row.cpu[side]),
                    "modules": row.modules.get(side),
                    "walls": row.wall[side],
                }
                for row in rows
                for side in row.wall
            ],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
