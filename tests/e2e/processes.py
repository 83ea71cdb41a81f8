"""Real processes on one database, and the effects file their steps write.

Steps append ``<saga> <step> begin|end <pid>`` lines to the effects file
(see ``owned_app.py``), so it shows every run of every step and who ran it.
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from sagakit.adapters.store import open_store_async

APP = Path(__file__).with_name("owned_app.py")
ROOT = APP.parents[2]
Runs = dict[tuple[str, str], list[tuple[str, int]]]


class Procs:
    """Real processes on one database: ``owned_app.py`` (or, with ``module``,
    the ``sagakit`` command), each logging to a file of its own."""

    def __init__(self, url: str, effects: Path, logs: Path) -> None:
        self.url, self.effects, self.logs = url, effects, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, module: bool = False) -> subprocess.Popen[bytes]:
        if module:
            command = [sys.executable, "-m", "sagakit.cli.main", "--db", self.url]
        else:
            command = [sys.executable, str(APP), self.url, str(self.effects)]
        log = self.logs / f"proc{len(self.procs)}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [*command, *args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "OWNED_EFFECTS": str(self.effects)},
            )
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.logs / f"proc{self.procs.index(proc)}.log").read_text()

    def finish(self, proc: subprocess.Popen[bytes], seconds: float = 60) -> str:
        try:
            code = proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            state = asyncio.run(_state(self.url))
            pytest.fail(f"process still running ({state}): {self.log(proc)[-2000:]}")
        assert code == 0, self.log(proc)[-2000:]
        return self.log(proc)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def stop(procs: Iterable[subprocess.Popen[bytes]], seconds: float = 15) -> None:
    """SIGTERM the processes still running, then SIGKILL any that is slow."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def runs(effects: Path) -> Runs:
    found: Runs = collections.defaultdict(list)
    lines = effects.read_text().splitlines() if effects.exists() else []
    for line in lines:
        saga_id, step, kind, pid = line.split()
        found[saga_id, step].append((kind, int(pid)))
    return found


def wait_until(what: str, check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def begun_by(effects: Path, pid: int) -> int:
    return sum(
        1
        for lines in runs(effects).values()
        for kind, p in lines
        if (kind, p) == ("begin", pid)
    )


async def _state(url: str) -> str:
    """What the store holds, to explain a process that did not end."""
    store = await open_store_async(url)
    try:
        counts = await store.count_by_status("owned")
        holders = await store.lease_holders(["owned"])
        running = await store.unfinished(["owned"], limit=5)
        return f"statuses {counts}, holders {holders}, unfinished {running}"
    finally:
        await store.close()
