"""A recording HTTP server on loopback that stands for the hosts the proxy talks to.

The proxy reaches it through `[proxy.upstreams]`. It records every request's headers,
answers `200 ok`, streams `/sse` slowly (two events, a pause between them), serves
`/oauth/token` like an OAuth token endpoint, and `/echo` answers 401 with every request
header echoed in a `WWW-Authenticate` header and in a body sent a few bytes at a time
(a careless upstream's error page).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class RecordingUpstream:
    def __init__(
        self, token_response: dict | None = None, sse_pause: float = 2.0, host: str = "127.0.0.1"
    ):
        self.seen: list[Seen] = []
        self.token_response = token_response or {
            "access_token": "fresh-access-token",
            "refresh_token": "rotated-refresh-token",
            "expires_in": 3600,
        }
        self.sse_pause = sse_pause
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _record(self) -> bytes:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with upstream._lock:
                    upstream.seen.append(
                        Seen(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                return body

            def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _echo(self) -> None:
                echoed = "\n".join(f"{k}: {v}" for k, v in self.headers.items()).encode()
                self.send_response(401)
                self.send_header("content-type", "text/plain")
                self.send_header(
                    "www-authenticate", f'Bearer error="{self.headers}"'.replace("\n", " ")
                )
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for i in range(0, len(echoed), 7):  # a secret split across chunks
                    piece = echoed[i : i + 7]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def do_GET(self) -> None:
                self._record()
                if self.path.startswith("/echo"):
                    self._echo()
                    return
                if self.path.startswith("/sse"):
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")
                    self.end_headers()
                    self.wfile.write(b"data: first\n\n")
                    self.wfile.flush()
                    time.sleep(upstream.sse_pause)
                    self.wfile.write(b"data: second\n\n")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._reply(200, f"ok {self.command} {self.path}\n".encode())

            def do_POST(self) -> None:
                self._record()
                if self.path.endswith("/oauth/token"):
                    self._reply(
                        200, json.dumps(upstream.token_response).encode(), "application/json"
                    )
                    return
                self._reply(200, f"ok {self.command} {self.path}\n".encode())

            do_PUT = do_DELETE = do_PATCH = do_POST

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def __enter__(self) -> RecordingUpstream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests_to(self, prefix: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.startswith(prefix)]
