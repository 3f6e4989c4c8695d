"""A small local fake of GitHub's pulls API (`POST/GET /repos/{owner}/{repo}/pulls`).

GitHub cannot be reached from the test machines, so `clauderon pr` is tested against
this (the only stand-in besides the fake model API). It checks what GitHub would: the
bearer token, the JSON body (`title`, `head`, `base` strings, `body`, `draft`), and
answers 201 with the new pull request, 422 "A pull request already exists" for the
same head and base, 401 for a wrong token. Standard library only.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGitHub:
    token: str
    host: str = "127.0.0.1"
    requests: list[Recorded] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # bad requests it saw

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, data: Any) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                url = urlsplit(self.path)
                fake.requests.append(
                    Recorded(self.command, self.path, dict(self.headers.items()), body)
                )
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    fake.problems.append(f"bad token on {self.command} {self.path}")
                    return self._answer(401, {"message": "Bad credentials"})
                parts = url.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "repos" or parts[3] != "pulls":
                    return self._answer(404, {"message": "Not Found"})
                owner, repo = parts[1], parts[2]
                if self.command == "GET":
                    query = parse_qs(url.query)
                    head = query.get("head", [""])[0]
                    found = [
                        p
                        for p in fake.pulls
                        if f"{owner}:{p['head']['ref']}" == head and p["state"] == "open"
                    ]
                    return self._answer(200, found)
                if not isinstance(body, dict) or not all(
                    isinstance(body.get(k), str) and body.get(k) for k in ("title", "head", "base")
                ):
                    fake.problems.append(f"bad body {body!r}")
                    return self._answer(422, {"message": "Validation Failed"})
                if not isinstance(body.get("draft", False), bool) or not isinstance(
                    body.get("body", ""), str
                ):
                    fake.problems.append(f"bad body {body!r}")
                    return self._answer(422, {"message": "Validation Failed"})
                for pull in fake.pulls:
                    if pull["head"]["ref"] == body["head"] and pull["base"]["ref"] == body["base"]:
                        return self._answer(
                            422,
                            {
                                "message": "Validation Failed",
                                "errors": [
                                    {
                                        "resource": "PullRequest",
                                        "code": "custom",
                                        "message": "A pull request already exists for "
                                        f"{owner}:{body['head']}.",
                                    }
                                ],
                            },
                        )
                number = len(fake.pulls) + 1
                pull = {
                    "number": number,
                    "state": "open",
                    "html_url": f"https://github.example/{owner}/{repo}/pull/{number}",
                    "title": body["title"],
                    "body": body.get("body", ""),
                    "draft": body.get("draft", False),
                    "head": {"ref": body["head"]},
                    "base": {"ref": body["base"]},
                }
                fake.pulls.append(pull)
                return self._answer(201, pull)

            do_GET = _handle
            do_POST = _handle
            # Recorded (then 404): what reached "GitHub" is what a test checks.
            do_PATCH = _handle
            do_PUT = _handle
            do_DELETE = _handle

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
