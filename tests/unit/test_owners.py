"""Whether the owner of a lease is alive: pid, start time, zombies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from sagakit.runtime.owners import HOST, default_worker_id, gone, process_alive


def _my_start() -> str:
    return default_worker_id().rsplit(":", 1)[1].partition("-")[2]


def test_a_default_id_names_host_pid_and_start_time() -> None:
    host, pid, tail = default_worker_id().rsplit(":", 2)
    assert host == HOST
    assert int(pid) == os.getpid()
    assert tail.partition("-")[2]  # the start time, on Linux
    assert default_worker_id() != default_worker_id()


def test_this_process_is_alive_unless_its_start_time_differs() -> None:
    started = _my_start()
    assert process_alive(os.getpid(), started)
    assert process_alive(os.getpid())
    assert not process_alive(os.getpid(), "1")  # the pid was reused


def test_a_dead_or_killed_unreaped_process_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    assert process_alive(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # a zombie now
    assert not process_alive(child.pid)
    child.wait()
    assert not process_alive(child.pid)


def test_gone_names_dead_owners_on_this_host_only() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = f"{HOST}:{child.pid}:abcdef-1"
    elsewhere = f"other-host:{child.pid}:abcdef-1"
    me = default_worker_id()
    peer = f"{HOST}:{os.getpid()}:fedcba-{_my_start()}"
    owners = [dead, elsewhere, "w1", me, peer]

    def never(owner: str) -> bool:
        return False

    assert gone(owners, me=me, mine=never, take_local=False) == [dead]
    assert gone(owners, me=me, mine=never, take_local=True) == [dead, peer]
    assert gone(owners, me=me, mine=lambda o: o == "w1", take_local=True) == [
        dead,
        "w1",
        peer,
    ]
