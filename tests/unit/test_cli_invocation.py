"""The demo's hint names ``sagakit`` as the reader's shell can run it."""

from __future__ import annotations

from pathlib import Path

from sagakit.cli.invocation import Invocation, invocation


def venv(root: Path) -> Path:
    """A virtual environment's bin directory with python, sagakit, activate."""
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "sagakit", "activate"):
        (bin_dir / name).write_text("")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_on_the_path_it_is_plain_sagakit(tmp_path: Path) -> None:
    bin_dir = venv(tmp_path)
    found = invocation(str(bin_dir), str(bin_dir / "python"), tmp_path)
    assert found == Invocation("sagakit", None)


def test_off_the_path_it_is_the_venv_command_and_its_activate(tmp_path: Path) -> None:
    bin_dir = venv(tmp_path)
    found = invocation(str(tmp_path / "elsewhere"), str(bin_dir / "python"), tmp_path)
    assert found == Invocation(".venv/bin/sagakit", ".venv/bin/activate")


def test_another_sagakit_on_the_path_is_not_this_one(tmp_path: Path) -> None:
    bin_dir = venv(tmp_path / "project")
    other = tmp_path / "other"
    other.mkdir()
    (other / "sagakit").write_text("")
    (other / "sagakit").chmod(0o755)
    found = invocation(str(other), str(bin_dir / "python"), tmp_path / "project")
    assert found.command == ".venv/bin/sagakit"


def test_outside_the_working_directory_the_path_is_absolute(tmp_path: Path) -> None:
    bin_dir = venv(tmp_path / "project")
    (tmp_path / "work").mkdir()
    found = invocation("", str(bin_dir / "python"), tmp_path / "work")
    assert found.command == str(bin_dir / "sagakit")


def test_without_the_command_it_is_python_dash_m(tmp_path: Path) -> None:
    found = invocation("", str(tmp_path / "python"), tmp_path)
    assert found == Invocation(f"{tmp_path / 'python'} -m sagakit.cli.main", None)
