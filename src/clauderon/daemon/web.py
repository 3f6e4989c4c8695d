"""What the daemon does for the web UI: serve its static files, exchange a login link for
the session cookie, and set the browser security headers. Everything else the pages do
goes through the same API as every other client.

Routes:
- `GET /` the page; `GET /static/…` its scripts, styles and the vendored xterm.js;
- `GET /login?token=…` a one-time login token → the cookie, then a redirect to `/`;
- `GET /web/session` the CSRF token of the cookie's session (another site cannot read it);
- `POST /web/logout` ends the cookie's session;
- `POST /api/web/listen`, `POST /api/web/login` — over the Unix socket only, for
  `clauderon web`: make sure a TCP listener runs, and make a login token.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.staticfiles import StaticFiles

from ..errors import ClauderonError
from ..web import STATIC
from .auth import LOGIN_PATH, SESSION_COOKIE, Scope, WebSessions, over_unix_socket

NONCE_MARK = "{{style_nonce}}"
_AUTHORITY = re.compile(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?")


class ListenRequest(BaseModel):
    host: str = Field("127.0.0.1", min_length=1, max_length=255)
    port: int = Field(3030, ge=1, le=65535)


def content_security_policy(host: str, style_nonce: str | None = None) -> str:
    """Scripts only from this origin, no inline script anywhere. Styles from this origin,
    plus — on the page only — `<style>` elements carrying the page's nonce: xterm.js
    sizes its grid with style elements it makes, and the page's script gives them the
    nonce (nothing user-controlled is ever put into markup)."""
    styles = "'self'" + (f" 'nonce-{style_nonce}'" if style_nonce else "")
    sockets = f" ws://{host}" if _AUTHORITY.fullmatch(host) else ""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            f"style-src {styles}",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self'{sockets}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeaders:
    """ASGI middleware for the TCP listener: every HTTP answer forbids framing, referrers,
    sniffing and caching, and has a strict Content-Security-Policy (unless the page set
    its own, with its style nonce)."""

    def __init__(self, app: Callable[..., Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                extra = [
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"no-store"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                ]
                if b"content-security-policy" not in names:
                    csp = content_security_policy(host).encode("latin-1")
                    extra.append((b"content-security-policy", csp))
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _local_only(request: Request) -> None:
    if not over_unix_socket(request.scope):
        raise ClauderonError(
            "this is for `clauderon web`, over the Unix socket only", code="forbidden", status=403
        )


def add_web_routes(
    app: FastAPI,
    sessions: WebSessions,
    listen: Callable[[str, int], Awaitable[dict[str, Any]]],
) -> None:
    """The web UI's routes on the daemon's app. `listen(host, port)` makes sure a TCP
    listener runs there and says whether it was already running."""
    index = (STATIC / "index.html").read_text()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> Response:
        nonce = secrets.token_urlsafe(18)
        host = request.headers.get("host", "")
        return HTMLResponse(
            index.replace(NONCE_MARK, nonce),
            headers={"content-security-policy": content_security_policy(host, nonce)},
        )

    @app.get(LOGIN_PATH, include_in_schema=False)
    async def login(token: str = "") -> Response:
        redeemed = sessions.redeem(token) if token else None
        if redeemed is None:
            return HTMLResponse(
                "<!doctype html><meta charset=utf-8><title>clauderon</title><p>This login "
                "link was used already or has expired. Run <code>clauderon web</code> for "
                "a new one.</p>",
                status_code=403,
            )
        cookie, _session = redeemed
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=int(sessions.SESSION_TTL),
            path="/",
            httponly=True,
            samesite="strict",
        )
        return response

    @app.get("/web/session", include_in_schema=False)
    async def web_session(request: Request) -> JSONResponse:
        session = sessions.session(request.scope)
        if session is None:  # a token client, or the Unix socket: nothing to protect
            return JSONResponse({"csrf": None})
        return JSONResponse({"csrf": session.csrf})

    @app.post("/web/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        session = sessions.session(request.scope)
        if session is not None:
            sessions.revoke(session.id)
        response = JSONResponse({"status": "logged out"})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.post("/api/web/listen")
    async def web_listen(req: ListenRequest, request: Request) -> dict[str, Any]:
        """Make sure the daemon listens on TCP at host:port (for `clauderon web`)."""
        _local_only(request)
        return await listen(req.host, req.port)

    @app.post("/api/web/login")
    async def web_login(request: Request) -> dict[str, Any]:
        """A one-time login token for the web UI (for `clauderon web`)."""
        _local_only(request)
        return {"token": sessions.new_login(), "expires_in": int(sessions.LOGIN_TTL)}
