"""Who may use the API: the Unix socket is the user's (0600); TCP is opt-in.

Over TCP — loopback included, since any web page or other local user can reach a loopback
port — every request must:

- name this machine in `Host` (an IP address, `localhost`, the machine's own name, or the
  listen address): a page whose name was rebound to 127.0.0.1 is refused;
- come from no foreign page: an `Origin` header, if present (browsers always send it on
  WebSockets and cross-site requests), must name this machine too;
- carry a credential. Credentials are pluggable (`Credential`): an API token from
  `clauderon token create` (`Authorization: Bearer …`, or `?token=` on a WebSocket, where
  a browser cannot set headers), or the web UI's session cookie (`WebSessions`: made from a
  one-time login link of `clauderon web`; its state-changing requests carry its CSRF token,
  and its requests from a page must come from the listener's own origin, port included).

`/login` is the one path served without a credential: it exchanges a login link's token
for the cookie (the Host and Origin checks still apply).

Every request and WebSocket a credential opened is tracked under that credential, so
revoking it — a token's revocation, a web session's logout or expiry — closes them at
once. `?token=` values are never logged (`redact_tokens`).
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

Scope = MutableMapping[str, Any]
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

    kind: str  # "token" (an API token) or "cookie" (a web UI session)
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
            query = parse_qs((scope.get("query_string") or b"").decode(errors="replace"))
            tokens = query.get("token") or []
            return str(tokens[0]) if tokens else None
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


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "clauderon_session"
CSRF_HEADER = b"x-csrf-token"
LOGIN_PATH = "/login"


def _cookie(scope: Scope, name: str) -> str | None:
    header = _header(scope, b"cookie")
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


@dataclass
class _WebSession:
    id: str
    csrf: str
    expires: float


class WebSessions:
    """The web UI's credential: an HttpOnly, SameSite=Strict cookie naming a session kept
    here, in the daemon's memory (a daemon restart logs every browser out; `revoke` ends
    one at once, `expire` the expired ones, closing the WebSockets they opened).

    A session starts from a login token that `clauderon web` asks for over the Unix
    socket: it works once, for `LOGIN_TTL` seconds. Requests with the cookie must:
    - carry the session's CSRF token in `X-CSRF-Token` when they change anything (the page
      reads it from `/web/session`, which another site's page cannot read);
    - come from the listener's own origin when they name one (`Origin` equal to `Host`,
      port included: a page on another local port is the same *site* for SameSite, and
      browsers send the cookie to it); a WebSocket must name it.
    """

    LOGIN_TTL = 300.0
    SESSION_TTL = 7 * 24 * 3600.0

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        connections: OpenConnections | None = None,
    ) -> None:
        import time

        self._clock = clock or time.monotonic
        self.connections = connections  # ended with their session (logout, expiry)
        self._logins: dict[str, float] = {}  # hash of a login token → when it expires
        self._sessions: dict[str, _WebSession] = {}  # hash of a cookie value → session

    def new_login(self) -> str:
        self._forget_expired()
        token = secrets.token_urlsafe(32)
        self._logins[hash_token(token)] = self._clock() + self.LOGIN_TTL
        return token

    def redeem(self, login_token: str) -> tuple[str, _WebSession] | None:
        """A login token → (cookie value, session); None when unknown, used or expired."""
        self._forget_expired()
        expires = self._logins.pop(hash_token(login_token), None)
        if expires is None or expires < self._clock():
            return None
        cookie = secrets.token_urlsafe(32)
        session = _WebSession(
            uuid.uuid4().hex[:12], secrets.token_urlsafe(32), self._clock() + self.SESSION_TTL
        )
        self._sessions[hash_token(cookie)] = session
        return cookie, session

    def session(self, scope: Scope) -> _WebSession | None:
        cookie = _cookie(scope, SESSION_COOKIE)
        if not cookie:
            return None
        session = self._sessions.get(hash_token(cookie))
        if session is None or session.expires < self._clock():
            return None
        return session

    def revoke(self, session_id: str) -> bool:
        """End a session (logout): its cookie stops working, and the requests and
        WebSockets it opened are closed — all but the calling request itself."""
        for key, session in list(self._sessions.items()):
            if session.id == session_id:
                del self._sessions[key]
                self._end(session, _running_task())
                return True
        return False

    def expire(self) -> int:
        """Forget expired login tokens and sessions, closing what the sessions opened
        (a WebSocket outlives no session). Returns how many sessions ended."""
        return self._forget_expired()

    async def expire_forever(self, interval: float = 60.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.expire()

    def _forget_expired(self) -> int:
        now = self._clock()
        self._logins = {k: v for k, v in self._logins.items() if v >= now}
        expired = [s for s in self._sessions.values() if s.expires < now]
        self._sessions = {k: v for k, v in self._sessions.items() if v.expires >= now}
        for session in expired:
            self._end(session, None)
        return len(expired)

    def _end(self, session: _WebSession, spare: asyncio.Task[Any] | None) -> None:
        if self.connections is not None:
            self.connections.revoke(Principal("cookie", session.id), spare=spare)

    def authenticate(self, scope: Scope) -> Principal | None:
        session = self.session(scope)
        if session is None:
            return None
        origin = _header(scope, b"origin")
        host = _header(scope, b"host") or ""
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            raise Refusal(403, "forbidden_origin", "requests from other origins are refused")
        if scope["type"] == "websocket" and origin is None:
            raise Refusal(403, "forbidden_origin", "a browser WebSocket names its origin")
        if scope["type"] == "http" and scope.get("method", "GET") not in SAFE_METHODS:
            presented = _header(scope, CSRF_HEADER) or ""
            if not hmac.compare_digest(presented.encode(), session.csrf.encode()):
                raise Refusal(403, "csrf_failed", "missing or wrong CSRF token (X-CSRF-Token)")
        return Principal("cookie", session.id)


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

    def revoke(self, principal: Principal, spare: asyncio.Task[Any] | None = None) -> int:
        """End everything `principal` opened, except the request running as `spare` (the
        logout asking for it, which still answers)."""
        entries = self._open.pop(principal, set())
        kept = {entry for entry in entries if spare is not None and entry.task is spare}
        if kept:
            self._open[principal] = kept
            entries -= kept
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
        if scope["type"] == "http" and scope.get("path") == LOGIN_PATH:
            return Principal("login", "")  # the login link is its own credential
        raise Refusal(
            401,
            "unauthorized",
            "a valid API token (Authorization: Bearer …; `clauderon token create`) or the web "
            "UI's login (`clauderon web`) is required",
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


def _running_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no event loop running
        return None


def _current_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


NOT_LOGGED_IN_PAGE = (
    "<!doctype html><meta charset=utf-8><title>clauderon</title>"
    "<p>Not logged in. Run <code>clauderon web</code> on the machine the daemon runs on "
    "and open the login link it prints.</p>"
)


async def _refuse(scope: Scope, send: Any, refusal: Refusal) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4401 if refusal.status == 401 else 4403})
        return
    headers = [(b"content-type", b"application/json")]
    body = json.dumps({"code": refusal.code, "message": refusal.message}).encode()
    if refusal.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
        if "text/html" in (_header(scope, b"accept") or ""):  # a browser without its cookie
            headers = [(b"content-type", b"text/html; charset=utf-8")]
            body = NOT_LOGGED_IN_PAGE.encode()
    headers += [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
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
