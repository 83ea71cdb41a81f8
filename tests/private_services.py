"""PostgreSQL and RabbitMQ servers of a test session's own, to restart at will.

The tests that stop and start a server mid-run (a database restart, a
broker restart, a PostgreSQL crash) must not take down the servers the
rest of the suite shares (other runs, other xdist workers, other
developers' tests on the machine). They run on a private instance each,
started from the installed binaries into a temporary directory, on free
ports, as the servers' own system users (``postgres``, ``rabbitmq``; the
tests run as root):

- :class:`PrivatePostgres`: ``initdb`` into a temporary directory, then
  ``postgres`` on a free port of 127.0.0.1 (trust authentication, no fsync:
  a crash is SIGKILL of the processes, not of the machine; commits are
  synchronous, so an acknowledged commit is in the OS's hands);
- :class:`PrivateRabbit`: a RabbitMQ node ``sagakit-chaos-<pid>@localhost``
  with its own ports, Mnesia and log directories and an empty plugin list.

Both are stopped (and their directories removed) by :meth:`close`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import free_ports

__all__ = ["PrivatePostgres", "PrivateRabbit", "ServiceError"]


class ServiceError(Exception):
    """A private server could not be started, stopped or reached."""


def _run(
    command: list[str], *, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",  # readable by the servers' users
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceError(f"{command[0]}: {exc}") from exc


def _checked(
    what: str, command: list[str], *, env: dict[str, str] | None = None
) -> None:
    done = _run(command, env=env)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise ServiceError(f"{what} failed: {said[-1] if said else done.returncode}")


def _own_directory(prefix: str, user: str) -> Path:
    """A new temporary directory that ``user`` owns (pytest's are root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        shutil.chown(path, user, user)
    except (LookupError, OSError) as exc:
        shutil.rmtree(path, ignore_errors=True)
        raise ServiceError(f"no system user {user!r} to run the server as") from exc
    return path


def _as(user: str, *command: str) -> list[str]:
    """``command`` run as ``user`` (the environment is kept but ``HOME``)."""
    if os.geteuid() != 0:
        raise ServiceError(f"starting a private server as {user!r} needs root")
    return ["runuser", "-u", user, "--", *command]


class PrivatePostgres:
    """A PostgreSQL server of its own (see the module)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise ServiceError("no PostgreSQL binaries under /usr/lib/postgresql")
        self.bin = Path(found[-1]).parent
        (self.port,) = free_ports(1)
        self.root = _own_directory("sagakit-pg-", "postgres")
        self.data = self.root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start_new(self) -> None:
        """``initdb``, then :meth:`start`."""
        _checked(
            "initdb",
            _as(
                "postgres",
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ),
        )
        settings = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": 200,
            # a crash here kills the server's processes, never the machine:
            # what was written to the OS survives, so no fsync is needed; but
            # a commit must reach the OS before it is acknowledged
            # (synchronous_commit on, the default), or an immediate stop
            # loses transactions the library was told were committed
            "fsync": "off",
            "full_page_writes": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self.start()

    def _pg_ctl(self, *args: str) -> list[str]:
        return _as(
            "postgres", str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", *args
        )

    def start(self) -> None:
        _checked(
            "starting PostgreSQL",
            self._pg_ctl("-l", str(self.root / "server.log"), "start"),
        )

    def stop(self, *, crash: bool = False) -> None:
        """Stop (with ``crash``: ``-m immediate``, no checkpoint, as a
        power cut would leave the files; else ``-m fast``)."""
        mode = "immediate" if crash else "fast"
        _checked("stopping PostgreSQL", self._pg_ctl("-m", mode, "stop"))

    def ready(self) -> bool:
        done = _run(
            [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
            timeout=10,
        )
        return done.returncode == 0

    def restart(self, outage: float, *, crash: bool = False) -> float:
        """Stop, wait ``outage`` seconds and start again; the seconds it took.
        The server is left running whatever happens."""
        began = time.monotonic()
        try:
            self.stop(crash=crash)
            time.sleep(outage)
        finally:
            self.ensure()
        return time.monotonic() - began

    def ensure(self) -> None:
        """Leave the server running and accepting connections."""
        if not self.ready():
            with contextlib.suppress(ServiceError):  # perhaps still stopping
                self.start()
        deadline = time.monotonic() + 60
        while not self.ready():
            if time.monotonic() > deadline:
                raise ServiceError("the private PostgreSQL does not accept connections")
            time.sleep(0.2)

    def close(self) -> None:
        """Stop at once (its files are thrown away) and remove them."""
        try:
            if self.ready():
                self.stop(crash=True)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


class PrivateRabbit:
    """A RabbitMQ node of its own (see the module)."""

    def __init__(self) -> None:
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            raise ServiceError(f"no rabbitmq-server in {RABBITMQ_BIN}")
        self.port, self.dist = free_ports(2)
        self.node = f"sagakit-chaos-{os.getpid()}@localhost"
        self.root = _own_directory("sagakit-rabbitmq-", "rabbitmq")
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        # the machine's own files name the shared node and its port: not read
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
        )
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbitmq.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def _ctl(self, *args: str) -> list[str]:
        """The command ``rabbitmqctl -n NODE ARGS``."""
        ctl = str(RABBITMQ_BIN / "rabbitmqctl")
        return _as("rabbitmq", ctl, "-n", self.node, *args)

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n NODE ARGS``."""
        return _run(self._ctl(*args), env=self.env, timeout=timeout)

    def start_detached(self) -> None:
        """Start the node in the background (:meth:`await_startup` next)."""
        for path in self.root.iterdir():
            shutil.chown(path, "rabbitmq", "rabbitmq")
        _checked(
            "starting RabbitMQ",
            _as("rabbitmq", str(RABBITMQ_BIN / "rabbitmq-server"), "-detached"),
            env=self.env,
        )

    def await_startup(self, seconds: float) -> None:
        """Until the node takes connections (its listener opens last)."""
        deadline = time.monotonic() + seconds
        while not self.listening():
            if time.monotonic() > deadline:
                logs = sorted((self.root / "log").glob("*.log"))
                tail = logs[0].read_text()[-1500:] if logs else "no log"
                raise ServiceError(f"the private RabbitMQ node did not start: {tail}")
            time.sleep(0.1)

    def restart_app(self) -> float:
        """``stop_app`` then ``start_app`` (connections drop; durable queues
        and persistent messages stay); the seconds it took. The node is
        left running whatever happens."""
        began = time.monotonic()
        try:
            for action in ("stop_app", "start_app"):
                _checked(f"rabbitmqctl {action}", self._ctl(action), env=self.env)
        except BaseException:
            self.ensure()
            raise
        return time.monotonic() - began

    def listening(self) -> bool:
        """Whether the node takes AMQP connections (a quick look, where
        ``rabbitmqctl`` boots a VM: seconds on a busy machine)."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
        except OSError:
            return False
        return True

    def ensure(self) -> None:
        """Leave the node's application running."""
        if not self.listening():
            self.ctl("start_app")
            self.await_startup(60)

    def close(self) -> None:
        """Kill the node (its files are thrown away: no clean stop needed)
        and remove its files."""
        try:
            pid = int((self.root / "rabbitmq.pid").read_text().strip())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):  # no pid written: ask it to stop
            self.ctl("stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
