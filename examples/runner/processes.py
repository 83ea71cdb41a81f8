"""The services of one example run: processes started from the example's
entry points (``sagakit worker``/``participant``, ``uvicorn MODULE:app``),
each logging to a file of its own, waited for until ready, and stopped
(SIGTERM, then SIGKILL) however the run ends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN = 30.0  # seconds a service may take to start
STOP_WITHIN = 10.0


class RunFailed(Exception):
    """The run cannot go on: a service did not start, or died."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def sagakit(*args: str) -> list[str]:
    """The ``sagakit`` command, as this interpreter runs it."""
    return [sys.executable, "-m", "sagakit.cli.main", *args]


def uvicorn(app: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


@dataclass
class Service:
    name: str
    argv: list[str]
    ready: Callable[[Service], bool]
    """True once the service serves (given the service, to read its log)."""
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(f"    {line}" for line in self.log().splitlines()[-lines:])


def logged(text: str) -> Callable[[Service], bool]:
    """Ready once the service's log says ``text``."""
    return lambda service: text in service.log()


def listening(port: int) -> Callable[[Service], bool]:
    """Ready once something accepts connections on ``port``."""
    return lambda _: port_open(port)


class Services:
    """Starts services, waits until each is ready; stops them all, newest
    first."""

    def __init__(self, logs: Path, env: dict[str, str], say: Callable[[str], None]):
        self.logs, self.env, self.say = logs, env, say
        self.started: list[Service] = []

    def start(self, services: list[Service]) -> None:
        """Start every service at once, then wait for each to be ready."""
        began = time.monotonic()
        for service in services:
            service.log_path = self.logs / f"{service.name}.log"
            with service.log_path.open("wb") as sink:
                service.process = subprocess.Popen(
                    service.argv,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    env=self.env,
                )
            self.started.append(service)
        self.say(f"  starting {', '.join(s.name for s in services)} ...")
        for service in services:
            while not service.ready(service):
                self.check(service)
                if time.monotonic() - began > READY_WITHIN:
                    raise RunFailed(
                        f"{service.name} not ready after {READY_WITHIN:g}s; "
                        f"its log:\n{service.tail()}"
                    )
                time.sleep(0.1)
            self.say(f"  {service.name} ready ({time.monotonic() - began:.1f}s)")

    def check(self, service: Service) -> None:
        """Raise RunFailed if ``service`` exited."""
        code = None if service.process is None else service.process.poll()
        if code is not None:
            raise RunFailed(
                f"{service.name} exited with status {code}; its log:\n{service.tail()}"
            )

    def check_all(self) -> None:
        for service in self.started:
            self.check(service)

    def stop(self) -> None:
        """SIGTERM each (newest first), then SIGKILL what is left; reap all."""
        running = [s.process for s in reversed(self.started) if s.process is not None]
        for proc in running:
            if proc.poll() is None:
                proc.terminate()
        for proc in running:
            try:
                proc.wait(STOP_WITHIN)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_WITHIN)
        self.started.clear()


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.update(extra)
    return env
