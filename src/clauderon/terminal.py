"""`clauderon attach`: this terminal becomes one more viewer of the agent's console.

It speaks the daemon's `/ws/console/{name}` protocol, so several terminals (and web
pages) can watch one agent at once, and detaching (Ctrl-P Ctrl-Q) only closes this
viewer: the agent never notices.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sys
import termios
import threading
import tty
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

DETACH = b"\x10\x11"  # Ctrl-P Ctrl-Q, as docker attach
DETACH_HUMAN = "Ctrl-P Ctrl-Q"


class _Ended(Exception):
    """Raised in the input loop when the output side has ended."""


def _ended(*_: object) -> None:
    raise _Ended


def _size() -> dict[str, Any]:
    columns, lines = os.get_terminal_size(sys.stdout.fileno())
    if not columns or not lines:  # a terminal that does not say: the classic size
        columns, lines = 80, 24
    return {"type": "resize", "rows": max(lines, 2), "cols": max(columns, 10)}


def console_path(name: str) -> str:
    """The console's address, with this terminal's size so the snapshot fits it."""
    size = _size()
    return f"/ws/console/{name}?rows={size['rows']}&cols={size['cols']}"


def run(ws: ClientConnection) -> str:
    """Relay between this terminal and the console until detach or exit; say which."""
    first = json.loads(ws.recv(timeout=15))
    if first.get("type") == "error":
        return f"error: {first['message']}"
    out = sys.stdout.buffer
    out.write(base64.b64decode(first["data"]))
    out.flush()
    ending: list[str] = []
    leaving = threading.Event()  # set once the input loop is done: no more wake-ups

    def receive() -> None:
        try:
            for raw in ws:
                message = json.loads(raw)
                if message["type"] == "output":
                    out.write(base64.b64decode(message["data"]))
                    out.flush()
                elif message["type"] == "exit":
                    ending.append("the agent's terminal closed")
                    break
        except ConnectionClosed:
            ending.append("the daemon closed the connection")
        if not leaving.is_set():
            os.kill(os.getpid(), signal.SIGUSR1)  # wake the input loop

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    previous_winch = signal.signal(signal.SIGWINCH, lambda *_: ws.send(json.dumps(_size())))
    previous_usr1 = signal.signal(signal.SIGUSR1, _ended)
    reader = threading.Thread(target=receive, daemon=True)
    try:
        tty.setraw(fd)
        ws.send(json.dumps(_size()))
        reader.start()
        pending = b""
        while not ending:
            try:
                chunk = os.read(fd, 4096)
            except _Ended:
                break
            if not chunk:
                break
            data = pending + chunk
            if DETACH in data:
                before = data[: data.index(DETACH)]
                if before:
                    ws.send(
                        json.dumps({"type": "input", "data_b64": base64.b64encode(before).decode()})
                    )
                return "detached; the agent keeps running"
            # Hold back a trailing Ctrl-P: it may be the start of the detach keys.
            pending = data[-1:] if data.endswith(DETACH[:1]) else b""
            send = data[:-1] if pending else data
            if send:
                ws.send(json.dumps({"type": "input", "data_b64": base64.b64encode(send).decode()}))
        return ending[0] if ending else "detached"
    except ConnectionClosed:
        return "the daemon closed the connection"
    except _Ended:
        return ending[0] if ending else "detached"
    finally:
        leaving.set()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        with contextlib.suppress(Exception):
            ws.close()
        if reader.is_alive():
            reader.join(timeout=5)
        signal.signal(signal.SIGWINCH, previous_winch)
        signal.signal(signal.SIGUSR1, previous_usr1)
