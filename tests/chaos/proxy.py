"""A TCP proxy on loopback that the Jepsen-style harness partitions with.

``python -m tests.chaos.proxy CONFIG`` reads ``CONFIG`` (JSON)::

    {"routes": {"worker-0.pg": [LISTEN_PORT, "127.0.0.1", 5432], ...},
     "control": "/path/to/control.json"}

and forwards each route's connections to its upstream. It looks at the
control file every 50 ms: ``{"worker-0.pg": {"mode": "drop"}, ...}``; a
route not named there is healthy (``ok``). The faults:

``drop``       every open connection is reset and new ones are closed at once
               (a peer that refuses: RST);
``blackhole``  nothing is forwarded either way and new connections hang
               (packets lost: the client sees only its own timeouts);
               healing forwards what waited, as a healed link would;
``delay``      each chunk waits ``ms`` milliseconds (default 300) first.

It prints ``ready`` once every route listens. Only loopback addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

POLL = 0.05
CHUNK = 65536


class Route:
    def __init__(self, name: str, host: str, port: int) -> None:
        self.name, self.host, self.port = name, host, port
        self.mode: dict[str, Any] = {"mode": "ok"}
        self.links: set[asyncio.StreamWriter] = set()
        self.healed = asyncio.Event()
        self.healed.set()

    def set_mode(self, mode: dict[str, Any]) -> None:
        if mode == self.mode:
            return
        self.mode = mode
        if mode["mode"] == "drop":
            for writer in list(self.links):
                with contextlib.suppress(Exception):
                    writer.transport.abort()  # RST, not a clean close
        if mode["mode"] == "blackhole":
            self.healed.clear()
        else:
            self.healed.set()

    async def pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                await self.healed.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self.healed.wait()  # held while black-holed
                if self.mode["mode"] == "delay":
                    await asyncio.sleep(self.mode.get("ms", 300) / 1000)
                if self.mode["mode"] == "drop":
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def serve(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        if self.mode["mode"] == "drop":
            client_w.transport.abort()
            return
        await self.healed.wait()  # a black-holed SYN gets no answer worth having
        try:
            up_r, up_w = await asyncio.open_connection(self.host, self.port)
        except OSError:
            client_w.transport.abort()
            return
        self.links.update((client_w, up_w))
        try:
            await asyncio.gather(self.pipe(client_r, up_w), self.pipe(up_r, client_w))
        finally:
            self.links.difference_update((client_w, up_w))


async def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())  # noqa: ASYNC240 - at start
    control = Path(config["control"])
    routes: dict[str, Route] = {}
    servers = []
    for name, (listen, host, port) in config["routes"].items():
        assert host.startswith("127.") or host == "localhost", host
        route = routes[name] = Route(name, host, port)
        servers.append(await asyncio.start_server(route.serve, "127.0.0.1", listen))
    print("ready", flush=True)
    seen = None
    while True:
        try:
            text = control.read_text()  # noqa: ASYNC240 - tiny, local
        except FileNotFoundError:
            text = "{}"
        if text != seen:
            seen = text
            try:
                wanted = json.loads(text or "{}")
            except ValueError:
                wanted = None  # half-written: read it again next time
                seen = None
            if wanted is not None:
                for name, route in routes.items():
                    route.set_mode(wanted.get(name, {"mode": "ok"}))
        await asyncio.sleep(POLL)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
