"""Who may use the API: the Unix socket is the user's (0600); TCP is opt-in.

On a loopback TCP address no token is asked (like the socket, it is this machine's);
beyond loopback every request and WebSocket must carry a token from `clauderon token
create` (`Authorization: Bearer …`, or `?token=` where a browser cannot set headers).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from ..store import Store

Scope = dict[str, Any]
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


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def over_unix_socket(scope: Scope) -> bool:
    return scope.get("client") is None


def _presented_token(scope: Scope) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == b"authorization":
            scheme, _, token = value.decode(errors="replace").partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip()
    query = parse_qs((scope.get("query_string") or b"").decode(errors="replace"))
    return (query.get("token") or [None])[0]


class TokenGate:
    """ASGI middleware: requests over a non-loopback TCP listener need a valid token."""

    def __init__(self, app: ASGIApp, store: Store):
        self.app = app
        self.store = store

    def _allowed(self, scope: Scope) -> bool:
        if over_unix_socket(scope):
            return True
        server = scope.get("server") or ("", None)
        if is_loopback(str(server[0])):
            return True
        token = _presented_token(scope)
        if not token:
            return False
        presented = hash_token(token)
        return any(hmac.compare_digest(presented, known) for known in self.store.token_hashes())

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not self._allowed(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4401})
                return
            body = json.dumps(
                {
                    "code": "unauthorized",
                    "message": "a valid API token is required "
                    "(Authorization: Bearer …; `clauderon token create`)",
                }
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b"Bearer"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await self.app(scope, receive, send)
