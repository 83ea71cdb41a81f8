"""How a reader of the CLI's hints should type ``sagakit`` in their shell.

After ``make demo`` the command lives in ``.venv/bin`` and is not on the
``PATH`` until the virtual environment is activated: a hint that says
``sagakit list`` then ends in ``sagakit: command not found``. The hints name
the command as this shell can run it.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Invocation:
    command: str  # what to type: "sagakit", ".venv/bin/sagakit", ...
    activate: str | None  # the venv's activate script, when it is not active


def invocation(
    path: str | None = None,
    executable: str = sys.executable,
    cwd: Path | None = None,
) -> Invocation:
    """``sagakit`` when the shell finds this installation's command on its
    ``PATH``; else the command's path next to the running interpreter (relative
    to ``cwd`` when it is below it), with the virtual environment's activate
    script; else ``python -m sagakit.cli.main``."""
    here = Path(executable).parent
    script = here / "sagakit"
    found = shutil.which("sagakit", path=path)
    if found is not None and (not script.exists() or _same(Path(found), script)):
        return Invocation("sagakit", None)
    if not script.exists():
        return Invocation(f"{executable} -m sagakit.cli.main", None)
    activate = here / "activate"
    return Invocation(
        _shown(script, cwd or Path.cwd()),
        _shown(activate, cwd or Path.cwd()) if activate.exists() else None,
    )


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _shown(target: Path, cwd: Path) -> str:
    """``target`` relative to ``cwd`` when it is below it, else absolute."""
    try:
        return str(Path(os.path.abspath(target)).relative_to(cwd.resolve()))
    except ValueError:
        return os.path.abspath(target)
