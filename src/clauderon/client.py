"""The daemon's client: HTTP over the Unix socket, starting the daemon when it is not up."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

from .errors import ClauderonError, DaemonUnavailable
from .paths import Paths

START_TIMEOUT = 15.0
REQUEST_TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=30.0, pool=5.0)


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        raise ClauderonError(body["message"], code=body.get("code"), status=response.status_code)
    except (ValueError, KeyError, TypeError):
        raise ClauderonError(
            f"daemon answered {response.status_code}: {response.text[:200]}",
            status=response.status_code,
        ) from None


class Client:
    def __init__(self, paths: Paths | None = None, autostart: bool = True):
        self.paths = paths or Paths.from_env()
        self.autostart = autostart
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.paths.socket)),
            base_url="http://clauderon",
            timeout=REQUEST_TIMEOUT,
        )
        self._ready = False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- daemon lifecycle -------------------------------------------------------------

    def ping(self) -> dict[str, Any] | None:
        try:
            response = self._http.get("/api/health", timeout=2.0)
            return response.json() if response.is_success else None
        except (httpx.TransportError, ValueError):
            return None

    def ensure_daemon(self) -> None:
        if self._ready:
            return
        if self.ping() is None:
            if not self.autostart:
                raise DaemonUnavailable("the clauderon daemon is not running")
            self._start_daemon()
        self._ready = True

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

    # --- requests ---------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.ensure_daemon()
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise DaemonUnavailable(f"lost the connection to the daemon: {exc}") from exc
        _raise_for(response)
        return response.json() if response.content else None

    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """JSON lines of a long operation; raises the operation's error in-band."""
        self.ensure_daemon()
        params = {**kwargs.pop("params", {}), "stream": "true"}
        try:
            with self._http.stream(method, path, params=params, **kwargs) as response:
                if not response.is_success:
                    response.read()
                    _raise_for(response)
                for line in response.iter_lines():
                    if not line:
                        continue
                    event = json.loads(line)
                    if event.get("type") == "error":
                        raise ClauderonError(event["message"], code=event.get("code"))
                    yield event
        except httpx.TransportError as exc:
            raise DaemonUnavailable(f"lost the connection to the daemon: {exc}") from exc

    def stream_bytes(self, method: str, path: str, **kwargs: Any) -> Iterator[bytes]:
        self.ensure_daemon()
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if not response.is_success:
                    response.read()
                    _raise_for(response)
                yield from response.iter_raw()
        except httpx.TransportError as exc:
            raise DaemonUnavailable(f"lost the connection to the daemon: {exc}") from exc
