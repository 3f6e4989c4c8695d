"""The dashboard's way to the daemon: `client.py` for requests (in worker threads, so the
screen never waits on them) and the two WebSockets, read asynchronously on Textual's loop.

`Daemon` is the whole contract the screens use; `tests/tui` has a stand-in with fixed data
for the snapshot tests, and everything else runs against the real daemon.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol
from urllib.parse import quote

from ..client import Client
from ..errors import ClauderonError, DaemonUnavailable

Progress = Callable[[dict[str, Any]], None]


# A dashboard pane is no place for a huge diff: `clauderon diff` shows the rest.
DIFF_SHOWN = 512 * 1024


class Daemon(Protocol):
    """What the dashboard asks of the daemon. Every call may raise ClauderonError."""

    async def sessions(self, archived: bool) -> list[dict[str, Any]]: ...
    async def session(self, name: str) -> dict[str, Any] | None: ...
    async def call(self, method: str, path: str, **kwargs: Any) -> Any: ...
    async def run_long(self, path: str, body: Any, progress: Progress) -> Any: ...
    def events(self) -> AsyncIterator[dict[str, Any]]: ...
    def console(self, name: str) -> AsyncIterator[dict[str, Any]]: ...
    async def audit(self, name: str, limit: int) -> list[dict[str, Any]]: ...
    async def diff(self, name: str) -> tuple[str, bool]: ...


class DaemonClient:
    """The real daemon, through `client.py` and its Unix socket."""

    def __init__(self, client: Client | None = None):
        self.client = client or Client()

    async def sessions(self, archived: bool) -> list[dict[str, Any]]:
        sessions: list[dict[str, Any]] = await self.call(
            "GET", "/api/sessions", params={"archived": archived}
        )
        return sessions

    async def session(self, name: str) -> dict[str, Any] | None:
        try:
            session: dict[str, Any] = await self.call("GET", f"/api/sessions/{quote(name)}")
        except ClauderonError as exc:
            if exc.status == 404:
                return None
            raise
        return session

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.client.request, method, path, **kwargs)

    async def run_long(self, path: str, body: Any, progress: Progress) -> Any:
        """A long operation (create, start, unarchive, refresh), its progress reported on
        the loop. Cancelling the awaiting task drops the stream, which cancels a creation."""
        loop = asyncio.get_running_loop()

        def work() -> Any:
            stream: Iterator[dict[str, Any]] = self.client.stream("POST", path, json=body)
            result = None
            for event in stream:
                if event["type"] == "progress":
                    loop.call_soon_threadsafe(progress, event)
                elif event["type"] == "result":
                    result = event["result"]
            return result

        return await asyncio.to_thread(work)

    async def _connect(self, path: str) -> Any:
        from websockets.asyncio.client import unix_connect

        try:
            return await unix_connect(
                str(self.client.paths.socket),
                uri=f"ws://clauderon{path}",
                open_timeout=10,
                max_size=None,
            )
        except OSError as exc:
            raise DaemonUnavailable(f"cannot reach the daemon: {exc}") from exc

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        from websockets.exceptions import ConnectionClosed

        ws = await self._connect("/ws/events")
        try:
            async for raw in ws:
                yield json.loads(raw)
        except ConnectionClosed:
            pass
        finally:
            await ws.close()
        raise DaemonUnavailable("the daemon closed the event stream")

    async def console(self, name: str) -> AsyncIterator[dict[str, Any]]:
        """The console read-only: its snapshot, then output. Sends nothing (not even a
        size), so a viewer here never resizes the agent under someone attached."""
        from websockets.exceptions import ConnectionClosed

        ws = await self._connect(f"/ws/console/{quote(name)}")
        try:
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") in ("snapshot", "output"):
                    message["bytes"] = base64.b64decode(message.get("data") or "")
                yield message
        except ConnectionClosed:
            yield {"type": "exit"}
        finally:
            await ws.close()

    async def audit(self, name: str, limit: int) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = await self.call(
            "GET", "/api/audit", params={"session": name, "limit": limit}
        )
        return entries

    async def diff(self, name: str) -> tuple[str, bool]:
        """The session's diff as text (at most DIFF_SHOWN bytes) and whether it was cut."""

        def read() -> tuple[str, bool]:
            data = b""
            path = f"/api/sessions/{quote(name)}/diff"
            for chunk in self.client.stream_bytes("GET", path, params={"color": False}):
                data += chunk
                if len(data) > DIFF_SHOWN:
                    return data[:DIFF_SHOWN].decode(errors="replace"), True
            return data.decode(errors="replace"), False

        return await asyncio.to_thread(read)

    def attach(self, name: str) -> str:
        """`clauderon attach` in this terminal (while the dashboard is suspended)."""
        import sys

        from ..terminal import DETACH_HUMAN, console_path, run

        self.client.request("GET", f"/api/sessions/{quote(name)}/attach")
        sys.stderr.write(f"Attached to {name}. {DETACH_HUMAN} returns to the dashboard.\r\n")
        sys.stderr.flush()
        with self.client.websocket(console_path(name)) as ws:
            return run(ws)
