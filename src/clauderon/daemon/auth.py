"""Who may use the API: the Unix socket is the user's (0600); TCP is opt-in.

Over TCP — loopback included, since any web page or other local user can reach a loopback
port — every request must:

- name this machine in `Host` (an IP address, `localhost`, the machine's own name, or the
  listen address): a page whose name was rebound to 127.0.0.1 is refused;
- come from no foreign page: an `Origin` header, if present (browsers always send it on
  WebSockets and cross-site requests), must name this machine too;
- carry a credential. Credentials are pluggable (`Credential`): today an API token from
  `clauderon token create` (`Authorization: Bearer …`, or `?token=` on a WebSocket, where
  a browser cannot set headers); a web UI's session cookie would be one more.

Every request and WebSocket a credential opened is tracked under that credential, so
revoking it closes them at once. `?token=` values are never logged (`redact_tokens`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import socket
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from ..store import Store

Scope = MutableMapping[str, Any]  # an ASGI scope (starlette types it so)
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]
TOKEN_PREFIX = "cldr_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(store: Store, name: str) -> tuple[str, str]:
    """Make a token; only its hash is kept. Returns (id, token)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = uuid.uuid4().hex[:12]
    store.add_token(token_id, name, hash_token(token))
    return token_id, token


def over_unix_socket(scope: Scope) -> bool:
    return scope.get("client") is None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the credential that admitted it (to revoke it later)."""

    kind: str  # "token" (a "cookie" for a web UI session would be another)
    id: str


class Credential(Protocol):
    """One way to prove who you are over TCP."""

    def authenticate(self, scope: Scope) -> Principal | None: ...


class BearerToken:
    """API tokens: `Authorization: Bearer …`, or `?token=` on a WebSocket only (a token
    in an HTTP URL ends up in histories and Referer headers)."""

    def __init__(self, store: Store):
        self.store = store

    def presented(self, scope: Scope) -> str | None:
        header = _header(scope, b"authorization")
        if header:
            scheme, _, token = header.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
        if scope["type"] == "websocket":
            raw: bytes = scope.get("query_string") or b""
            query = parse_qs(raw.decode(errors="replace"))
            tokens = query.get("token")
            return tokens[0] if tokens else None
        return None

    def authenticate(self, scope: Scope) -> Principal | None:
        token = self.presented(scope)
        if not token:
            return None
        presented = hash_token(token)
        for token_id, known in self.store.token_ids_and_hashes():
            if hmac.compare_digest(presented, known):
                return Principal("token", token_id)
        return None


def _host_name(value: str) -> str:
    """`Host`/`Origin` authority → the bare, lower-case name (brackets and port gone)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    name, sep, port = value.rpartition(":")
    return name if sep and port.isdigit() else value


def own_names(listen_host: str) -> frozenset[str]:
    """Names a request to this daemon may use: the listen address, `localhost`, and the
    machine's own names. (Any IP address is accepted too: no page can rebind one.)"""
    names = {"localhost", listen_host.strip("[]").lower()}
    with contextlib.suppress(OSError):
        names.add(socket.gethostname().lower())
        names.add(socket.getfqdn().lower())
    return frozenset(names)


def names_this_machine(name: str, names: frozenset[str]) -> bool:
    if name in names or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(eq=False)
class _Open:
    task: asyncio.Task[Any]
    websocket: bool
    send: Any


class OpenConnections:
    """The requests and WebSockets in flight per principal, so that revoking a
    credential ends everything it opened."""

    def __init__(self) -> None:
        self._open: dict[Principal, set[_Open]] = {}
        self._ending: set[asyncio.Task[None]] = set()

    def add(self, principal: Principal, entry: _Open) -> None:
        self._open.setdefault(principal, set()).add(entry)

    def discard(self, principal: Principal, entry: _Open) -> None:
        entries = self._open.get(principal)
        if entries is not None:
            entries.discard(entry)
            if not entries:
                del self._open[principal]

    def revoke(self, principal: Principal) -> int:
        entries = self._open.pop(principal, set())
        for entry in entries:
            ending = asyncio.ensure_future(self._end(entry))
            self._ending.add(ending)
            ending.add_done_callback(self._ending.discard)
        return len(entries)

    @staticmethod
    async def _end(entry: _Open) -> None:
        if entry.websocket:  # say why first (4401), then stop the handler
            with contextlib.suppress(Exception):
                await entry.send({"type": "websocket.close", "code": 4401})
        entry.task.cancel(msg="revoked")


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message


class TokenGate:
    """ASGI middleware: the checks above for every request over TCP."""

    def __init__(
        self,
        app: ASGIApp,
        store: Store,
        connections: OpenConnections | None = None,
        listen_host: str = "127.0.0.1",
        credentials: list[Credential] | None = None,
    ):
        self.app = app
        self.store = store
        self.connections = connections or OpenConnections()
        self.names = own_names(listen_host)
        self.credentials: list[Credential] = credentials or [BearerToken(store)]

    def check(self, scope: Scope) -> Principal | None:
        """None over the Unix socket; the principal over TCP; else `Refusal`."""
        if over_unix_socket(scope):
            return None
        host = _header(scope, b"host")
        if host is None or not names_this_machine(_host_name(host), self.names):
            raise Refusal(403, "forbidden_host", "this daemon does not serve that Host name")
        origin = _header(scope, b"origin")
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not names_this_machine(
                _host_name(parts.netloc), self.names
            ):
                raise Refusal(403, "forbidden_origin", "requests from other sites are refused")
        for credential in self.credentials:
            principal = credential.authenticate(scope)
            if principal is not None:
                return principal
        raise Refusal(
            401,
            "unauthorized",
            "a valid API token is required (Authorization: Bearer …; `clauderon token create`)",
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            principal = self.check(scope)
        except Refusal as refusal:
            await _refuse(scope, send, refusal)
            return
        if principal is None:
            await self.app(scope, receive, send)
            return
        task = asyncio.ensure_future(self.app(scope, receive, send))
        entry = _Open(task, scope["type"] == "websocket", send)
        self.connections.add(principal, entry)
        try:
            await task
        except asyncio.CancelledError:
            if task.cancelled() and not _current_cancelled():
                return  # revoked: the WebSocket was closed with 4401; a response just stops
            raise
        finally:
            self.connections.discard(principal, entry)


def _current_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _refuse(scope: Scope, send: Any, refusal: Refusal) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4401 if refusal.status == 401 else 4403})
        return
    headers = [(b"content-type", b"application/json")]
    if refusal.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    body = json.dumps({"code": refusal.code, "message": refusal.message}).encode()
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Never write a `?token=` value to a log (uvicorn logs every WebSocket's path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _TOKEN_IN_TEXT.sub(r"\1[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
