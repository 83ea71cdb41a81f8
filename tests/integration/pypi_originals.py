"""The original libraries the compat layers stand in for, fetched from PyPI.

``fetch("pg-saga==0.1.7", into)`` runs ``pip download --no-deps`` into a
throw-away folder and unpacks what it got (a wheel or an sdist); nothing is
installed. Without a network the tests that need it skip, or fail when
``CI=true`` (:func:`tests.conftest.unavailable`).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from tests.conftest import unavailable


def fetch(requirement: str, into: Path) -> Path:
    """Download ``requirement`` into ``into`` and return the unpacked folder:
    the wheel's root, or the sdist's top folder."""
    downloads = into / "downloads"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--no-input",
            "--timeout",
            "20",
            "-d",
            str(downloads),
            requirement,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0:
        unavailable(f"cannot download {requirement} from PyPI: {done.stderr[-500:]}")
    (archive,) = downloads.iterdir()
    unpacked = into / "unpacked"
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            wheel.extractall(unpacked)  # noqa: S202 - zipfile drops ".." and roots
        return unpacked
    with tarfile.open(archive) as sdist:
        sdist.extractall(unpacked, filter="data")
    (top,) = unpacked.iterdir()
    return top
