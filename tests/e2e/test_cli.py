"""The ``sagakit`` CLI, run as a subprocess against a SQLite file."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sagakit import SQLiteStore
from sagakit.examples.trip import fully_booked_trip, happy_trip, trip_saga
from sagakit.runtime import Orchestrator

pytestmark = pytest.mark.e2e

SAGA_ID = re.compile(r"\b[0-9a-f]{32}\b")


def sagakit(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "SAGAKIT_DATABASE_URL"}
    environ.update({"COLUMNS": "200", "NO_COLOR": "1"}, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "sagakit.cli.main", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rows(output: str) -> list[list[str]]:
    """The cells of every table row in rich output."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A database filled by one ``sagakit demo`` run, and that run's stdout."""
    workdir = tmp_path_factory.mktemp("demo")
    db = workdir / "demo.db"
    result = sagakit("--db", str(db), "demo", cwd=workdir)
    assert result.returncode == 0, result.stderr
    return db, result.stdout


def ids_by_status(db: Path, cwd: Path) -> dict[str, str]:
    result = sagakit("--db", str(db), "list", cwd=cwd)
    assert result.returncode == 0, result.stderr
    table = [r for r in rows(result.stdout) if SAGA_ID.fullmatch(r[0])]
    return {r[2]: r[0] for r in table}


def test_demo_prints_both_outcomes_and_a_hint(demo: tuple[Path, str]) -> None:
    _, stdout = demo
    assert "succeeded" in stdout
    assert "compensated" in stdout
    assert "book_hotel failed (NoRoomsAvailable" in stdout
    # the bookings are compensated concurrently: either may be undone first
    assert re.search(
        r"undone: (book_flight, book_tours|book_tours, book_flight)", stdout
    )
    assert "sagakit --db" in stdout
    assert " show " in stdout
    assert " list" in stdout


def test_list_shows_the_two_sagas(demo: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = demo
    result = sagakit("--db", str(db), "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = [r for r in rows(result.stdout) if SAGA_ID.fullmatch(r[0])]
    assert sorted((r[1], r[2], r[3]) for r in table) == [
        ("trip", "compensated", "book_hotel"),
        ("trip", "succeeded", ""),
    ]


def test_list_filters(demo: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = demo
    only = sagakit("--db", str(db), "list", "--status", "succeeded", cwd=tmp_path)
    assert [r[2] for r in rows(only.stdout)] == ["succeeded"]
    other = sagakit("--db", str(db), "list", "--saga", "other", cwd=tmp_path)
    assert rows(other.stdout) == []
    one = sagakit("--db", str(db), "list", "--limit", "1", cwd=tmp_path)
    assert [r[2] for r in rows(one.stdout)] == ["compensated"]  # newest first
    assert "1 of 2 saga(s)" in one.stdout
    assert "1 saga(s)" in only.stdout
    aged = ["list", "--older-than", "0s", "--limit", "1"]
    some = sagakit("--db", str(db), *aged, cwd=tmp_path)  # no count kept
    assert "1 of more than 1 saga(s)" in some.stdout


def test_show_failed_saga_timeline(demo: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = demo
    failed_id = ids_by_status(db, tmp_path)["compensated"]
    result = sagakit("--db", str(db), "show", failed_id[:8], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert failed_id in result.stdout
    assert "NoRoomsAvailable: no rooms in Kyoto for 4 nights" in result.stdout
    # columns: start, end, kind, step, try, outcome, ms, result / error
    timeline = [r for r in rows(result.stdout) if len(r) == 8]
    actions = [(r[3], r[5]) for r in timeline if r[2] == "action"]
    assert ("book_hotel", "failed") in actions
    completed = [step for step, outcome in actions if outcome == "succeeded"]
    assert sorted(completed) == ["book_flight", "book_tours"]
    compensations = [(r[3], r[5]) for r in timeline if r[2] == "compensation"]
    # the bookings were a parallel group: compensated concurrently
    assert sorted(compensations) == [(step, "succeeded") for step in sorted(completed)]
    assert all(step != "book_hotel" for step, _ in compensations)
    assert [r[5] for r in timeline if r[2] == "saga"] == ["started", "compensated"]


def test_show_succeeded_saga(demo: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = demo
    ok_id = ids_by_status(db, tmp_path)["succeeded"]
    result = sagakit("--db", str(db), "show", ok_id, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    timeline = [r for r in rows(result.stdout) if len(r) == 8]
    assert [r[2] for r in timeline].count("compensation") == 0
    assert timeline[-1][5] == "succeeded"
    assert "send_itinerary" in result.stdout


def test_show_lists_each_steps_status_and_result(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    db, _ = demo
    failed_id = ids_by_status(db, tmp_path)["compensated"]
    result = sagakit("--db", str(db), "show", failed_id, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "steps" in [line.strip() for line in result.stdout.splitlines()]
    # columns: step, status, result (what later steps read as ``results``)
    steps = {r[0]: (r[1], r[2]) for r in rows(result.stdout) if len(r) == 3}
    assert steps["book_hotel"] == ("failed", "")
    for booked, prefix in (("book_flight", "FL-"), ("book_tours", "TR-")):
        status, reference = steps[booked]
        assert status == "compensated"
        assert reference.startswith(prefix)
    assert steps["confirm_trip"] == ("pending", "")  # never started


def test_unknown_id_is_one_error_line(demo: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = demo
    assert_one_error_line(sagakit("--db", str(db), "show", "f" * 32, cwd=tmp_path))
    assert_one_error_line(sagakit("--db", str(db), "show", "abc", cwd=tmp_path))


def test_ambiguous_prefix(tmp_path: Path) -> None:
    db = tmp_path / "twins.db"

    async def fill() -> None:
        orchestrator = Orchestrator(SQLiteStore(db), [trip_saga])
        await orchestrator.run(trip_saga, happy_trip(), saga_id="abcdef01")
        await orchestrator.run(trip_saga, fully_booked_trip(), saga_id="abcdef02")
        await orchestrator.close()

    asyncio.run(fill())
    result = sagakit("--db", str(db), "show", "abcdef", cwd=tmp_path)
    assert_one_error_line(result)
    assert "ambiguous" in result.stderr
    unique = sagakit("--db", str(db), "show", "abcdef0", cwd=tmp_path)
    assert unique.returncode == 2  # still two matches
    exact = sagakit("--db", str(db), "show", "abcdef02", cwd=tmp_path)
    assert exact.returncode == 0, exact.stderr
    assert "compensated" in exact.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--status", "bogus"],
        ["list", "--limit", "0"],
        ["list", "--limit", "9" * 30],  # overflowed SQLite's integers
        ["--log-level", "loud", "list"],
        ["--db", "nosuchdir/x.db", "list"],
        ["--db", "mysql://localhost/x", "list"],
        ["recover", "no_such_module_here"],
        ["recover", "sagakit.examples.trip:nothing"],
        ["recover", "sagakit.examples.trip:happy_trip"],
        ["recover", ":trip_saga"],
    ],
)
def test_bad_options_are_one_error_line(tmp_path: Path, args: list[str]) -> None:
    assert_one_error_line(sagakit(*args, cwd=tmp_path))


def test_an_unknown_event_loop_is_one_error_line(tmp_path: Path) -> None:
    result = sagakit(
        "recover",
        "sagakit.examples.trip",
        cwd=tmp_path,
        env={"SAGAKIT_EVENT_LOOP": "trio"},
    )
    assert_one_error_line(result)
    assert "SAGAKIT_EVENT_LOOP" in result.stderr


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_the_cli_runs_on_either_loop(
    demo: tuple[Path, str], tmp_path: Path, choice: str
) -> None:
    db, _ = demo
    result = sagakit(
        "--db", str(db), "list", cwd=tmp_path, env={"SAGAKIT_EVENT_LOOP": choice}
    )
    assert result.returncode == 0, result.stderr
    assert len([r for r in rows(result.stdout) if SAGA_ID.fullmatch(r[0])]) == 2


def test_database_url_from_environment(demo: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = demo
    result = sagakit("list", cwd=tmp_path, env={"SAGAKIT_DATABASE_URL": str(db)})
    assert result.returncode == 0, result.stderr
    assert len([r for r in rows(result.stdout) if SAGA_ID.fullmatch(r[0])]) == 2
    assert not (tmp_path / "sagakit.db").exists()


def test_default_database_is_in_the_working_directory(tmp_path: Path) -> None:
    refused = sagakit("list", cwd=tmp_path)  # read-only: creates nothing
    assert refused.returncode == 2
    assert "no saga database at 'sagakit.db'" in refused.stderr
    assert not (tmp_path / "sagakit.db").exists()

    result = sagakit("recover", "sagakit.examples.trip", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sagakit.db").exists()
    assert sagakit("list", cwd=tmp_path).returncode == 0


def test_version(tmp_path: Path) -> None:
    result = sagakit("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("sagakit ")


def test_recover_with_nothing_to_do(tmp_path: Path) -> None:
    result = sagakit(
        "--db", str(tmp_path / "r.db"), "recover", "sagakit.examples.trip", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "resumed 0 saga(s)" in result.stdout


def test_read_only_commands_create_no_database(tmp_path: Path) -> None:
    missing = tmp_path / "absent.db"
    for args in (["list"], ["show", "abc"], ["list", "--status", "failed"]):
        done = subprocess.run(
            [sys.executable, "-m", "sagakit.cli.main", "--db", str(missing), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.strip().splitlines() == [
            f"error: no saga database at {str(missing)!r}: nothing to read (see --db)"
        ]
        assert not missing.exists()
    assert list(tmp_path.iterdir()) == []
