"""The daemon's client: HTTP over the Unix socket, starting the daemon when it is not up.

Built on the standard library's `http.client` rather than httpx: importing httpx alone
cost ~75 ms of every CLI command (measured, see docs/benchmarks.md), and `clauderon list`
has a 200 ms budget. The protocol is small: JSON requests, JSON or JSON-lines answers.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from .errors import ClauderonError, DaemonUnavailable
from .paths import Paths

START_TIMEOUT = 15.0
CONNECT_TIMEOUT = 5.0
# What to do when the daemon went away in the middle of an answer (it was killed or
# crashed): the operation was rolled back or finished by the next daemon's start-up.
LOST_ADVICE = "run the command again (`clauderon list` shows what exists)"


def lost_connection(exc: BaseException | None = None) -> DaemonUnavailable:
    detail = f" ({exc})" if exc is not None and str(exc) else ""
    return DaemonUnavailable(f"lost the connection to the daemon{detail}: {LOST_ADVICE}")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None = None):
        super().__init__("clauderon", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(self.socket_path)
        sock.settimeout(self.timeout)
        self.sock = sock


def _error_from(status: int, body: bytes) -> ClauderonError:
    try:
        data = json.loads(body)
        return ClauderonError(data["message"], code=data.get("code"), status=status)
    except (ValueError, KeyError, TypeError):
        text = body.decode(errors="replace")[:200]
        return ClauderonError(f"daemon answered {status}: {text}", status=status)


def _query(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    encoded = {
        k: ("true" if v is True else "false" if v is False else v)
        for k, v in params.items()
        if v is not None
    }
    return "?" + urlencode(encoded)


class Client:
    def __init__(self, paths: Paths | None = None, autostart: bool = True):
        self.paths = paths or Paths.from_env()
        self.autostart = autostart
        self._started = False

    def _open(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: Any,
        timeout: float | None,
    ) -> http.client.HTTPResponse:
        conn = UnixHTTPConnection(str(self.paths.socket), timeout=timeout)
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if payload is not None else {}
        conn.request(method, path + _query(params), body=payload, headers=headers)
        return conn.getresponse()

    # --- daemon lifecycle -------------------------------------------------------------

    def ping(self) -> dict[str, Any] | None:
        try:
            response = self._open("GET", "/api/health", None, None, timeout=2.0)
            return json.loads(response.read()) if response.status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            return None

    def _start_daemon(self) -> None:
        self.paths.ensure()
        with open(self.paths.spawn_lock, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one client starts it; the others wait here
            if self.ping() is not None:
                return
            out_path = self.paths.logs / "daemon.out"
            with open(out_path, "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "clauderon", "daemon"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,  # survives the CLI and its terminal's Ctrl-C
                    env={**os.environ, "CLAUDERON_HOME": str(self.paths.home)},
                )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.ping() is not None:
                    return
                if proc.poll() is not None:
                    tail = out_path.read_text(errors="replace").strip().splitlines()[-1:]
                    reason = tail[0] if tail else f"exit code {proc.returncode}"
                    reason = reason.removeprefix("clauderon: error: ")
                    raise DaemonUnavailable(f"the clauderon daemon failed to start: {reason}")
                time.sleep(0.05)
            raise DaemonUnavailable(
                f"the clauderon daemon did not answer within {START_TIMEOUT:.0f}s; "
                f"see {self.paths.logs / 'daemon.log'}"
            )

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: Any,
        timeout: float | None,
    ) -> http.client.HTTPResponse:
        """Send, starting the daemon first if nothing answers on the socket."""
        try:
            return self._open(method, path, params, body, timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            if not self.autostart or self._started:
                raise DaemonUnavailable("the clauderon daemon is not running") from None
        self._started = True
        self._start_daemon()
        try:
            return self._open(method, path, params, body, timeout)
        except OSError as exc:
            raise DaemonUnavailable(f"cannot reach the daemon: {exc}") from exc

    # --- requests ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Any:
        try:
            response = self._send(method, path, params, json, timeout)
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise lost_connection(exc) from exc
        if response.status >= 400:
            raise _error_from(response.status, data)
        try:
            return _loads(data)
        except ValueError as exc:
            raise lost_connection(exc) from exc

    def stream(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> Iterator[dict[str, Any]]:
        """JSON lines of a long operation, ending with its result; raises the operation's
        error in-band, and a clear error when the stream ends without a result."""
        try:
            response = self._send(method, path, {**(params or {}), "stream": True}, json, None)
            if response.status >= 400:
                raise _error_from(response.status, response.read())
            for line in response:
                if not line.strip():
                    continue
                event = _loads(line)
                if not isinstance(event, dict):
                    raise ValueError("not a JSON object")
                if event.get("type") == "error":
                    raise ClauderonError(event["message"], code=event.get("code"))
                yield event
                if event.get("type") == "result":
                    return
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise lost_connection(exc) from exc
        raise lost_connection()

    def stream_bytes(
        self, method: str, path: str, *, params: dict[str, Any] | None = None
    ) -> Iterator[bytes]:
        try:
            response = self._send(method, path, params, None, None)
            if response.status >= 400:
                raise _error_from(response.status, response.read())
            while chunk := response.read1(65536):
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            raise lost_connection(exc) from exc

    def websocket(self, path: str) -> Any:
        """A WebSocket to the daemon over its socket (starting the daemon if needed)."""
        from websockets.sync.client import unix_connect

        if self.ping() is None:
            self.request("GET", "/api/health")  # starts the daemon
        return unix_connect(
            str(self.paths.socket), uri=f"ws://clauderon{path}", open_timeout=15, max_size=None
        )


def _loads(data: bytes) -> Any:
    return json.loads(data) if data.strip() else None
