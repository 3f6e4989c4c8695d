"""The daemon's TCP listeners: `--listen` at start, or added while it runs (`clauderon web`
asks over the Unix socket), so nothing has to restart and no session is disturbed.

Each listener is its own uvicorn server on the same app, behind a gate that knows the
listener's address (its `Host` names) and the browser security headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator
from typing import Any

import uvicorn

from ..store import Store
from .auth import ASGIApp, Credential, OpenConnections, TokenGate
from .web import SecurityHeaders

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """A uvicorn server beside the main one: the main one handles the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Listeners:
    def __init__(
        self,
        app: ASGIApp,
        store: Store,
        connections: OpenConnections,
        credentials: list[Credential],
        bind: Callable[[str, int], socket.socket],
    ) -> None:
        self.app = app
        self.store = store
        self.connections = connections
        self.credentials = credentials
        self._bind = bind  # (host, port) → a bound socket, or ClauderonError
        self._running: dict[tuple[str, int], tuple[_Server, asyncio.Task[None]]] = {}

    def addresses(self) -> list[str]:
        return [f"{host}:{port}" for host, port in self._running]

    async def listen(self, host: str, port: int) -> dict[str, Any]:
        """Start serving on host:port, unless already serving there."""
        key = (host, port)
        if key in self._running:
            return {"host": host, "port": port, "started": False}
        sock = self._bind(host, port)
        gate = TokenGate(
            self.app,
            self.store,
            self.connections,
            listen_host=host,
            credentials=self.credentials,
        )
        config = uvicorn.Config(
            SecurityHeaders(gate),
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
            lifespan="off",
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        self._running[key] = (server, task)
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            del self._running[key]
            task.result()  # its error
        log.info("listening on %s:%s (a token or the web UI's login required)", host, port)
        return {"host": host, "port": port, "started": True}

    async def close(self) -> None:
        for server, _task in self._running.values():
            server.should_exit = True
        await asyncio.gather(*(task for _s, task in self._running.values()), return_exceptions=True)
        self._running.clear()
