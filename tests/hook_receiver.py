"""A real webhook endpoint for the hook tests: Starlette on uvicorn, on an
ephemeral port of 127.0.0.1, served in the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HANG = 0
"""An answer that never comes (the request hangs until the server stops)."""


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every POST to ``url``; answers with ``answers`` in order (a
    status, or :data:`HANG`), then 200."""

    answers: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: Request) -> Response:
        self.requests.append(Received(dict(request.headers), await request.body()))
        async with self._arrived:
            self._arrived.notify_all()
        status = self.answers.pop(0) if self.answers else 200
        if status == HANG:
            await asyncio.Event().wait()
        return Response(b"receiver says no" if status >= 400 else b"", status)

    async def wait_for(self, count: int) -> list[Received]:
        """The requests, once there are ``count`` (bound it with a timeout)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return self.requests

    async def __aenter__(self) -> Receiver:
        self._arrived = asyncio.Condition()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            while not self._server.started:  # noqa: ASYNC110 - uvicorn has no event
                await asyncio.sleep(0.01)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._server.force_exit = True
        await self._task
