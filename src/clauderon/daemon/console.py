"""Agent terminals: one attachment per session, shared by every viewer.

The daemon attaches to a session's container once, feeds what the agent draws into a
pyte screen (so a new viewer gets a snapshot of the current screen at once), and fans the
output out to every viewer. Viewers send input, resizes and signals; detaching only
unsubscribes, so the agent never notices a viewer leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from typing import Any

import pyte

from ..backends import Backend
from .blocking import blocking

log = logging.getLogger(__name__)

DEFAULT_ROWS, DEFAULT_COLS = 40, 120
# After a resize, the snapshot waits for the agent's redraw: output quiet this long, at most
# REDRAW_LIMIT in all.
REDRAW_QUIET, REDRAW_LIMIT = 0.2, 1.5
VIEWER_QUEUE = 1024
PASTE_START, PASTE_END = b"\x1b[200~", b"\x1b[201~"


def bracketed_paste(text: str) -> bytes:
    """The message as one bracketed paste. A paste-end marker inside it would end the
    paste early and turn the rest into keystrokes, so markers are removed until none is
    left (removing one can join the pieces of another)."""
    body = text.encode()
    while PASTE_END in body:
        body = body.replace(PASTE_END, b"")
    return PASTE_START + body + PASTE_END


# Signals a viewer may send, as the terminal would: the agent sees the key, not a kill.
SIGNAL_KEYS = {"SIGINT": b"\x03", "SIGQUIT": b"\x1c", "SIGTSTP": b"\x1a"}

_COLORS = ("black", "red", "green", "brown", "blue", "magenta", "cyan", "white")


def _color(value: str, background: bool) -> str:
    if value == "default":
        return "49" if background else "39"
    base = 40 if background else 30
    if value in _COLORS:
        return str(base + _COLORS.index(value))
    if value.startswith("bright") and value[6:] in _COLORS:
        return str(base + 60 + _COLORS.index(value[6:]))
    if len(value) == 6:
        try:
            r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            return "49" if background else "39"
        return f"{base + 8};2;{r};{g};{b}"
    return "49" if background else "39"


def render(screen: pyte.Screen) -> bytes:
    """The screen as escape sequences that redraw it on a fresh terminal."""
    out = ["\x1b[0m\x1b[H\x1b[2J"]
    for row in range(screen.lines):
        line = screen.buffer[row]
        current = None
        out.append(f"\x1b[{row + 1};1H")
        for col in range(screen.columns):
            char = line[col]
            style = (char.fg, char.bg, char.bold, char.italics, char.underscore, char.reverse)
            if style != current:
                codes = ["0", _color(char.fg, False), _color(char.bg, True)]
                codes += [
                    c
                    for c, on in (
                        ("1", char.bold),
                        ("3", char.italics),
                        ("4", char.underscore),
                        ("7", char.reverse),
                    )
                    if on
                ]
                out.append(f"\x1b[{';'.join(codes)}m")
                current = style
            out.append(char.data or " ")
    out.append(f"\x1b[0m\x1b[{screen.cursor.y + 1};{screen.cursor.x + 1}H")
    if screen.cursor.hidden:
        out.append("\x1b[?25l")
    return "".join(out).encode()


class Console:
    """A live attachment to one container's terminal."""

    def __init__(
        self,
        name: str,
        container: str,
        sock: socket.socket,
        backend: Backend,
        loop: asyncio.AbstractEventLoop,
        rows: int,
        cols: int,
    ):
        self.name = name
        self.container = container
        self.backend = backend
        self.rows, self.cols = rows, cols
        self._sock = sock
        self._loop = loop
        self._screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self._screen)
        self._lock = threading.Lock()
        self._viewers: set[asyncio.Queue[bytes | None]] = set()
        self.closed = asyncio.Event()
        self.drawn = asyncio.Event()  # the agent has redrawn for this attachment
        self.last_output = time.monotonic()
        self._reader = threading.Thread(target=self._read, name=f"console-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while True:
                data = self._sock.recv(65536)
                if not data:
                    break
                with self._lock:
                    self._stream.feed(data)
                self._loop.call_soon_threadsafe(self._broadcast, data)
        except OSError:
            pass
        finally:
            self._loop.call_soon_threadsafe(self._finish)

    def _broadcast(self, data: bytes | None) -> None:
        self.last_output = time.monotonic()
        for queue in list(self._viewers):
            if queue.full():  # a viewer that stopped reading misses output, not the others
                continue
            queue.put_nowait(data)

    def _finish(self) -> None:
        self._broadcast(None)
        self.closed.set()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rows": self._screen.lines,
                "cols": self._screen.columns,
                "cursor": {"row": self._screen.cursor.y, "col": self._screen.cursor.x},
                "data": render(self._screen),
                "text": "\n".join(line.rstrip() for line in self._screen.display),
            }

    def subscribe(self) -> asyncio.Queue[bytes | None]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(VIEWER_QUEUE)
        self._viewers.add(queue)
        if self.closed.is_set():
            queue.put_nowait(None)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._viewers.discard(queue)

    async def write(self, data: bytes) -> None:
        if self.closed.is_set():
            raise ConnectionError("the agent's terminal is closed")
        await blocking(self._sock.sendall, data)

    async def send_message(self, text: str) -> None:
        """Type a message and submit it, as a user would: pasted, then Enter separately."""
        await self.write(bracketed_paste(text))
        await asyncio.sleep(0.15)  # a CR in the same write would be part of the paste
        await self.write(b"\r")

    async def signal(self, name: str) -> None:
        key = SIGNAL_KEYS.get(name)
        if key is None:
            raise ValueError(f"unsupported signal {name!r}: one of {', '.join(SIGNAL_KEYS)}")
        await self.write(key)

    async def resize(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        with self._lock:
            self._screen.resize(rows, cols)
        await blocking(self.backend.resize, self.container, rows, cols)

    async def fit(self, rows: int, cols: int) -> None:
        """Take a new viewer's size before its snapshot: resize, then give the agent a moment
        to redraw (until its output pauses), so the snapshot is drawn at that size."""
        if (rows, cols) == (self.rows, self.cols):
            return
        asked = time.monotonic()
        await self.resize(rows, cols)
        await self.redrawn(asked)

    async def redrawn(self, asked: float) -> None:
        """Wait until the agent has redrawn since `asked` (a resize) and its output has
        paused, at most REDRAW_LIMIT: a snapshot taken before the redraw starts is blank
        or half-drawn."""
        deadline = asked + REDRAW_LIMIT
        while time.monotonic() < deadline:
            await asyncio.sleep(REDRAW_QUIET / 4)
            now = time.monotonic()
            if self.last_output > asked and now - self.last_output >= REDRAW_QUIET:
                return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()


class ConsoleManager:
    def __init__(self) -> None:
        self._consoles: dict[str, Console] = {}
        self._lock = asyncio.Lock()

    async def open(self, name: str, container: str, backend: Backend) -> Console:
        """The session's console, attaching when there is none (or the last one ended)."""
        async with self._lock:
            console = self._consoles.get(name)
            if console is not None and not console.closed.is_set():
                await console.drawn.wait()
                return console
            sock = await blocking(backend.attach, container)
            console = Console(
                name,
                container,
                sock,
                backend,
                asyncio.get_running_loop(),
                DEFAULT_ROWS,
                DEFAULT_COLS,
            )
            self._consoles[name] = console
        # A new attachment has no screen yet: a size change makes the agent redraw. Two
        # changes in a row can reach the agent as none (it sees the size it had), so each
        # waits for its redraw. (Outside the lock: other sessions' consoles need not wait.)
        try:
            for cols in (DEFAULT_COLS - 1, DEFAULT_COLS):
                asked = time.monotonic()
                await console.resize(DEFAULT_ROWS, cols)
                await console.redrawn(asked)
        finally:
            console.drawn.set()
        return console

    def forget(self, name: str) -> None:
        console = self._consoles.pop(name, None)
        if console is not None:
            console.close()

    def close_all(self) -> None:
        for name in list(self._consoles):
            self.forget(name)
