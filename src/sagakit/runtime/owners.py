"""Who drives an instance, and whether that owner is still alive.

Every orchestrator leases what it drives to its ``worker_id``. A default id
is ``host:pid:random-start``: the host and process it runs in, and the
process's start time (so a pid the system reused is not taken for the old
process). An owner on this host whose process is gone has left its
instances behind at once, without waiting out its lease; an owner elsewhere
(or with an id of the user's choosing) is gone when its lease expires.

The drivers of this process register here (:func:`started`), so that an
operator's request can tell whether a live lease's owner in this process
still drives the instance (:func:`drives`).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

HOST = socket.gethostname()
_PLAIN = re.compile(r"[A-Za-z0-9_.:@-]{1,100}")
_START_FIELD = 19  # starttime, counted after the ")" that ends the name
_ID_PARTS = 3  # host, pid, random-start


class Driving(Protocol):
    """What this module sees of a driver: its owner id and what it drives."""

    @property
    def worker_id(self) -> str: ...

    @property
    def active(self) -> Mapping[str, object]: ...


_STARTED: set[str] = set()
_DRIVERS: weakref.WeakSet[Driving] = weakref.WeakSet()


def started(driver: Driving) -> None:
    """Count ``driver`` among this process's drivers."""
    _STARTED.add(driver.worker_id)
    _DRIVERS.add(driver)


def started_here(owner: str) -> bool:
    """Whether a driver of this process ever leased instances as ``owner``."""
    return owner in _STARTED


def drives(owner: str, saga_id: str, *, me: str) -> bool:
    """Whether ``owner``, holding a live lease on ``saga_id``, is a live
    driver of it: one of this process that drives it now, or one elsewhere
    not known to be gone (see :func:`gone`). ``me`` drives nothing this way
    (the caller knows what it drives)."""
    if owner == me:
        return False
    if started_here(owner):
        return any(d.worker_id == owner and saga_id in d.active for d in list(_DRIVERS))
    return not gone([owner], me=me, mine=started_here, take_local=False)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """The process's state letter and start time (clock ticks after boot),
    or None where ``/proc`` cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the name may hold spaces
    if len(fields) <= _START_FIELD:
        return None
    return fields[0], fields[_START_FIELD]


def _started(pid: int) -> str:
    stat = _proc_stat(pid)
    return "" if stat is None else stat[1]


def default_worker_id() -> str:
    """``host:pid:random-start``: unique per process, readable in the store."""
    pid = os.getpid()
    start = _started(pid)
    tail = uuid.uuid4().hex[:6] + (f"-{start}" if start else "")
    return f"{HOST}:{pid}:{tail}"


def reply_key(worker_id: str) -> str:
    """The key under which replies reach ``worker_id``'s own reply queue: the
    id itself when it is short and plain (letters, digits, ``_.:@-``), else
    a digest of it."""
    if _PLAIN.fullmatch(worker_id):
        return worker_id
    return "w-" + hashlib.sha256(worker_id.encode("utf-8", "replace")).hexdigest()[:32]


def process_alive(pid: int, started: str = "") -> bool:
    """Whether process ``pid`` (started at ``started``, if known) runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists; another user's
    except OSError:
        return True  # cannot tell: trust the lease
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, start = stat
    if state in ("Z", "X"):  # killed, not yet reaped
        return False
    return not started or start == started


def gone(
    owners: Iterable[str],
    *,
    me: str,
    mine: Callable[[str], bool],
    take_local: bool,
) -> list[str]:
    """The ``owners`` known to be gone without waiting for their leases:
    those on this host whose process died and, with ``take_local``, the
    other owners of this process (``mine``, or with this pid: the old
    embedded rule, one process owns the database). ``me`` is never gone."""
    found = []
    for owner in owners:
        parts = owner.rsplit(":", 2)
        if owner == me:
            continue
        if mine(owner):
            local = True
        elif len(parts) != _ID_PARTS or parts[0] != HOST or not parts[1].isdigit():
            continue
        else:
            pid = int(parts[1])
            local = pid == os.getpid()
            if not local and not process_alive(pid, parts[2].partition("-")[2]):
                found.append(owner)
                continue
        if local and take_local:
            found.append(owner)
    return found
