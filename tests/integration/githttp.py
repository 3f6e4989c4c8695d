"""A git smart-HTTP server on loopback, standing in for github.com in the tests.

`git http-backend` (git's own CGI program) behind a small threaded HTTP server: clones,
fetches and pushes work against bare repositories under `root`, as they do against
GitHub. The proxy reaches it through `[proxy.upstreams]`. It accepts request bodies with a
Content-Length or chunked (the proxy forwards pushes chunked), and records each request's
method, path and body size.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass(frozen=True)
class GitRequest:
    method: str
    path: str
    body_size: int


def _read_chunked(handler: BaseHTTPRequestHandler) -> bytes:
    body = bytearray()
    while True:
        size = int(handler.rfile.readline().split(b";", 1)[0].strip(), 16)
        if size == 0:
            while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(body)
        body += handler.rfile.read(size)
        handler.rfile.readline()


class GitHTTPServer:
    def __init__(self, root: Path):
        self.root = root
        self.seen: list[GitRequest] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    return _read_chunked(self)
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _cgi(self) -> None:
                body = self._body()
                path, _, query = self.path.partition("?")
                with server._lock:
                    server.seen.append(GitRequest(self.command, path, len(body)))
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "GIT_CONFIG_NOSYSTEM": "1",
                    "HOME": str(server.root),
                    "REMOTE_USER": "test",  # http-backend enables receive-pack for a user
                    "REMOTE_ADDR": self.client_address[0],
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("content-type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                }
                for name in ("content-encoding", "git-protocol"):
                    if name in self.headers:
                        env["HTTP_" + name.upper().replace("-", "_")] = self.headers[name]
                done = subprocess.run(
                    ["git", "http-backend"], input=body, env=env, capture_output=True
                )
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                if not _:
                    head, _, payload = done.stdout.partition(b"\n\n")
                status = "200 OK"
                headers = []
                for line in head.decode(errors="replace").splitlines():
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = value.strip()
                    elif name:
                        headers.append((name, value.strip()))
                code, _, reason = status.partition(" ")
                self.send_response(int(code), reason)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _cgi

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> GitHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests(self, suffix: str) -> list[GitRequest]:
        with self._lock:
            return [r for r in self.seen if r.path.endswith(suffix)]
