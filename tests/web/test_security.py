"""What the web UI's listener refuses (issue 13): on loopback too, every request needs the
cookie or a token; a foreign Host, a cross-origin WebSocket and a cookie POST without the
CSRF token are refused; the pages carry a strict CSP."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from .conftest import Web

pytestmark = [pytest.mark.docker, pytest.mark.agent]


def request(
    web: Web, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body).encode()
        all_headers = {"Host": f"127.0.0.1:{web.port}", **(headers or {})}
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=all_headers)
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def websocket_refused(web: Web, path: str, headers: dict[str, str]) -> bool:
    """True when the daemon never accepts the WebSocket (refused before or at accept)."""
    try:
        with connect(
            f"ws://127.0.0.1:{web.port}{path}", additional_headers=headers, open_timeout=10
        ) as ws:
            ws.recv(timeout=10)
            return False
    except InvalidStatus:
        return True
    except Exception:  # closed at once (4401/4403)
        return True


@pytest.fixture
def cookie(context, web: Web) -> str:
    page = context.new_page()
    page.goto(web.login_link())
    page.wait_for_selector("#connection:has-text('live')")
    (value,) = [c["value"] for c in context.cookies() if c["name"] == "clauderon_session"]
    return f"clauderon_session={value}"


@pytest.mark.parametrize(
    "path", ["/", "/static/js/app.js", "/static/vendor/xterm.mjs", "/api/sessions", "/web/session"]
)
def test_loopback_without_cookie_or_token_is_refused(web: Web, path: str):
    web.login_link()  # the listener runs
    status, _headers, _body = request(web, "GET", path)
    assert status == 401
    status, _headers, _body = request(web, "GET", path, {"Cookie": "clauderon_session=forged"})
    assert status == 401
    assert websocket_refused(web, "/ws/events", {"Origin": web.base})
    assert websocket_refused(web, "/ws/console/first", {"Origin": web.base})


def test_a_browser_without_its_cookie_is_told_how_to_log_in(web: Web):
    web.login_link()
    status, headers, body = request(web, "GET", "/", {"Accept": "text/html"})
    assert status == 401 and headers["content-type"].startswith("text/html")
    assert b"clauderon web" in body


def test_foreign_host_is_refused(web: Web, cookie: str):
    for host in ("evil.example", f"evil.example:{web.port}", "rebound.attacker.test"):
        status, _h, _b = request(web, "GET", "/api/sessions", {"Host": host, "Cookie": cookie})
        assert status == 403, host
    status, _h, _b = request(web, "GET", "/api/sessions", {"Cookie": cookie})
    assert status == 200


def test_cookie_posts_need_the_csrf_token(web: Web, cookie: str):
    status, _h, body = request(
        web, "POST", "/api/sessions/first/send", {"Cookie": cookie}, {"text": "x"}
    )
    assert status == 403 and json.loads(body)["code"] == "csrf_failed"
    status, _h, body = request(
        web,
        "POST",
        "/api/sessions/first/send",
        {"Cookie": cookie, "X-CSRF-Token": "wrong"},
        {"text": "x"},
    )
    assert status == 403
    status, _h, body = request(web, "GET", "/web/session", {"Cookie": cookie})
    csrf = json.loads(body)["csrf"]
    status, _h, body = request(
        web, "POST", "/api/sessions/no-such/stop", {"Cookie": cookie, "X-CSRF-Token": csrf}
    )
    assert status == 404  # past the gate: the API answered


def test_a_page_post_without_the_csrf_token_is_refused(page, web: Web):
    before = web.session("first")["state"]
    answer = page.evaluate(
        """async () => {
            const r = await fetch('/api/sessions/first/stop', {method: 'POST'});
            return [r.status, (await r.json()).code];
        }"""
    )
    assert answer == [403, "csrf_failed"]
    assert web.session("first")["state"] == before


def test_cross_origin_websocket_is_refused(page, browser, web: Web):
    """A page on another local port is the same *site* (the browser sends the cookie with
    SameSite=Strict), but not the same origin: its WebSocket is refused."""
    script = f"""() => new Promise((resolve) => {{
        const ws = new WebSocket('ws://127.0.0.1:{web.port}/ws/events');
        ws.onmessage = () => {{ resolve('open'); ws.close(); }};
        ws.onclose = (event) => resolve('closed ' + event.code);
        setTimeout(() => resolve('timeout'), 10000);
    }})"""
    assert page.evaluate(script) == "open"  # the UI's own origin

    class Blank(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<!doctype html><title>other</title>")

        def log_message(self, *args: Any) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Blank)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        foreign = page.context.new_page()  # same browser, same cookie jar
        foreign.goto(f"http://127.0.0.1:{other.server_port}/")
        assert foreign.evaluate(script).startswith("closed")
    finally:
        other.shutdown()
        other.server_close()
    # And without a browser: an Origin that is not the listener's, with the cookie.
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
    for origin in ("http://evil.example", f"http://127.0.0.1:{web.port + 1}"):
        assert websocket_refused(web, "/ws/events", {"Origin": origin, "Cookie": cookie})
    assert websocket_refused(web, "/ws/events", {"Cookie": cookie})  # no Origin at all
    assert not websocket_refused(web, "/ws/events", {"Origin": web.base, "Cookie": cookie})


def test_api_tokens_keep_working_without_csrf(web: Web):
    token = web.clauderon.run("token", "create", "--name", "web-test").stdout.splitlines()[0]
    auth = {"Authorization": f"Bearer {token}"}
    status, _h, body = request(web, "GET", "/api/sessions", auth)
    assert status == 200 and any(s["name"] == "first" for s in json.loads(body))
    status, _h, _b = request(web, "POST", "/api/sessions/no-such/stop", auth)
    assert status == 404  # a token client needs no CSRF token


def test_pages_carry_a_strict_content_security_policy(web: Web, cookie: str):
    status, headers, body = request(web, "GET", "/", {"Cookie": cookie})
    assert status == 200
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert b"<script>" not in body and b" style=" not in body  # no inline script or style
    status, headers, _b = request(web, "GET", "/api/sessions", {"Cookie": cookie})
    assert "content-security-policy" in headers and headers["cache-control"] == "no-store"


def test_logging_out_ends_the_cookie(context, web: Web):
    page = context.new_page()
    page.goto(web.login_link())
    page.wait_for_selector("#connection:has-text('live')")
    (value,) = [c["value"] for c in context.cookies() if c["name"] == "clauderon_session"]
    page.click("#logout")
    page.wait_for_selector("text=Not logged in")
    assert context.cookies() == []
    status, _h, _b = request(web, "GET", "/api/sessions", {"Cookie": f"clauderon_session={value}"})
    assert status == 401  # ended in the daemon, not only forgotten by the browser


def test_logging_out_closes_the_sessions_open_websockets(web: Web, cookie: str):
    """A WebSocket opened under the cookie does not outlive the logout: the daemon closes
    it (4401), as it does a revoked token's."""
    headers = {"Origin": web.base, "Cookie": cookie}
    status, _h, body = request(web, "GET", "/web/session", {"Cookie": cookie})
    csrf = json.loads(body)["csrf"]
    with (
        connect(f"ws://127.0.0.1:{web.port}/ws/events", additional_headers=headers) as events,
        connect(
            f"ws://127.0.0.1:{web.port}/ws/console/first", additional_headers=headers
        ) as console,
    ):
        assert json.loads(events.recv(timeout=30))["type"] == "connected"
        console.recv(timeout=30)  # the snapshot: the terminal is open
        status, _h, body = request(
            web, "POST", "/web/logout", {"Cookie": cookie, "X-CSRF-Token": csrf, **headers}
        )
        assert status == 200, body
        for ws in (events, console):
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # anything already on its way, then the close
                    ws.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
