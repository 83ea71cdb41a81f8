"""docs/getting-started/fastapi.md, followed as a newcomer would, so the page
cannot rot: every command of its ``sh`` blocks runs (``make demo``, the
environment it exports, ``uvicorn`` as a process, ``curl`` as httpx
requests, the ``sagakit`` CLI), its ``shop.py`` is the app that serves, and
each ``json`` block must be what the request before it answered.

Stand-ins, and only these: the directory is a scratch "clone" holding the
repository's Makefile and pyproject.toml, whose ``.venv`` is this test's
environment already installed (the install ``make demo`` would do is what
``make test`` did); the database URL is a throw-away, empty database; the
port is a free one. A command the page gains that this test does not know
fails the test, so page and test change together.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import cloned_database, free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "getting-started" / "fastapi.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)
APP_FILE = re.compile(r"\A# (\w+\.py)\n")
PAGE_PORT = "8000"
WAIT = 30.0  # seconds any one step may take


def blocks() -> list[tuple[str, str]]:
    """(language, text) of each fenced block of the page, in order."""
    return [(m[1], m[2]) for m in FENCE.finditer(PAGE.read_text())]


def commands(text: str) -> list[str]:
    """The commands of an ``sh`` block (continuations joined, comments out)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = (line.split(" #", 1)[0].strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def clone_stand_in(where: Path) -> Path:
    """A directory ``make demo`` runs in, its .venv this environment's."""
    where.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, where / name)
    venv = where / ".venv"
    venv.mkdir()
    (venv / "bin").symlink_to(Path(sys.executable).parent, target_is_directory=True)
    cksum = subprocess.run(
        ["cksum"],
        input=(where / "pyproject.toml").read_bytes(),
        capture_output=True,
        check=True,
    )
    (venv / f".installed-{cksum.stdout.split()[0].decode()}").touch()
    return where


class Reader:
    """Follows the page: the shell's environment, the server, the answers."""

    def __init__(self, clone: Path, database: str, logs: Path) -> None:
        self.clone, self.database, self.logs = clone, database, logs
        self.port = str(free_ports(1)[0])
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAKIT_")}
        self.env = {
            **env,
            "PYTHONPATH": str(ROOT / "src"),  # this checkout's sagakit
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.answer: httpx.Response | None = None
        self.shown: dict[str, str] = {}

    def local(self, command: str) -> str:
        return command.replace(f":{PAGE_PORT}", f":{self.port}").replace(
            f"--port {PAGE_PORT}", f"--port {self.port}"
        )

    def run(self, command: str) -> None:
        words = shlex.split(self.local(command))
        if words == ["make", "demo"]:
            self.make_demo()
        elif words == ["source", ".venv/bin/activate"]:
            venv = self.clone / ".venv"
            self.env["VIRTUAL_ENV"] = str(venv)
            self.env["PATH"] = f"{venv / 'bin'}{os.pathsep}{self.env['PATH']}"
        elif words[0] == "export":
            name, _, value = words[1].partition("=")
            if name == "SAGAKIT_DATABASE_URL":
                assert value.startswith("postgresql://"), value
                value = self.database
            self.env[name] = value
        elif words[0] == "uvicorn":
            self.serve(words)
        elif words[0] == "curl":
            self.curl(words[1:])
        elif words[0] == "sagakit":
            self.sagakit(words)
        else:
            pytest.fail(f"the page runs {command!r}: teach this test what it does")

    def shell(self, words: list[str]) -> str:
        """Run a command in the clone; its output (it must succeed)."""
        done = subprocess.run(
            words,
            cwd=self.clone,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    def make_demo(self) -> None:
        shown = self.shell(["make", "demo"])
        assert "succeeded" in shown
        assert "compensated" in shown
        assert (self.clone / "sagakit.db").exists()

    def serve(self, words: list[str]) -> None:
        assert self.server is None, "the page starts uvicorn twice"
        log = self.logs / "uvicorn.log"
        with log.open("wb") as sink:
            self.server = subprocess.Popen(
                words,
                cwd=self.clone,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + WAIT
        while "Application startup complete." not in log.read_text(errors="replace"):
            code = self.server.poll()
            if code is not None or time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not start ({code}):\n{log.read_text()}")
            time.sleep(0.05)

    def curl(self, args: list[str]) -> None:
        method, headers, data, url = "GET", {}, None, None
        words = iter(args)
        for word in words:
            if word == "-s":
                continue
            if word == "-X":
                method = next(words)
            elif word == "-H":
                name, _, value = next(words).partition(":")
                headers[name.strip()] = value.strip()
            elif word == "-d":
                data = next(words)
                method = "POST" if method == "GET" else method
            elif word.startswith("http"):
                url = word
            else:
                pytest.fail(f"curl option {word!r}: teach this test what it does")
        assert url is not None
        self.answer = httpx.request(
            method, url, headers=headers, content=data, timeout=WAIT
        )

    def expect(self, shown: str) -> None:
        """The last answer is the ``json`` block the page shows (asked again
        while the saga is still running, as the page says to)."""
        assert self.answer is not None, "a json block with no request before it"
        expected = json.loads(shown)
        deadline = time.monotonic() + WAIT
        body: Any = self.answer.json()
        while body != expected and body.get("status") == "running":
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
            self.answer = httpx.request(
                self.answer.request.method, self.answer.request.url, timeout=WAIT
            )
            body = self.answer.json()
        assert self.answer.is_success, self.answer.text
        assert body == expected
        self.answer = None

    def sagakit(self, words: list[str]) -> None:
        self.shown[" ".join(words)] = self.shell(words)

    def stop(self) -> str:
        """Ctrl-C the server (it drains and stops); its log."""
        log = (self.logs / "uvicorn.log").read_text(errors="replace")
        if self.server is None:
            return log
        self.server.send_signal(signal.SIGINT)
        try:
            code = self.server.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait(WAIT)
            raise
        assert code == 0, log
        return (self.logs / "uvicorn.log").read_text(errors="replace")


@pytest.fixture
def throwaway_database(pg_template: str) -> Iterator[str]:
    """An empty database (no sagakit tables: the page's app creates them)."""
    with cloned_database("template0") as url:
        yield url


def test_the_fastapi_tutorial_works_as_written(
    throwaway_database: str, tmp_path: Path
) -> None:
    reader = Reader(clone_stand_in(tmp_path / "sagakit"), throwaway_database, tmp_path)
    apps = 0
    try:
        for language, text in blocks():
            if language == "sh":
                for command in commands(text):
                    reader.run(command)
            elif language == "python":
                name = APP_FILE.match(text)
                assert name is not None, "the app's block starts with '# FILE.py'"
                (reader.clone / name[1]).write_text(text)
                apps += 1
            elif language == "json":
                reader.expect(text)
            else:
                pytest.fail(f"a {language!r} block: teach this test what it is")
    finally:
        log = reader.stop()
    assert apps == 1
    assert reader.server is not None, "the page never starts the app"
    assert "Application shutdown complete." in log
    # the page says what `sagakit show B-2` prints
    (shown,) = [
        out for cmd, out in reader.shown.items() if cmd.startswith("sagakit show")
    ]
    for fact in ("compensated", "reserve_stock", "charge_card", "card declined"):
        assert fact in shown, shown
