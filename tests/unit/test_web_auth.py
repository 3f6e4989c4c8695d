"""The web UI's credential (issue 13): one-time login tokens, the session cookie, its CSRF
token and origin rule, decided on ASGI scopes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

import pytest

from clauderon.daemon.auth import (
    SESSION_COOKIE,
    BearerToken,
    OpenConnections,
    RedactTokens,
    Refusal,
    TokenGate,
    WebSessions,
)
from clauderon.store import Store
from clauderon.web.assets import FILES, PACKAGES

HOST = "127.0.0.1:3030"


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    clock = Clock()
    sessions = WebSessions(clock)
    gate = TokenGate(lambda *a: None, store, credentials=[BearerToken(store), sessions])
    yield gate, sessions, clock
    store.close()


def scope(kind="http", method="GET", path="/api/sessions", **headers: str):
    pairs = [(b"host", HOST.encode())]
    pairs += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {
        "type": kind,
        "method": method,
        "path": path,
        "client": ("127.0.0.1", 5555),
        "headers": pairs,
        "query_string": b"",
    }


def verdict(gate: TokenGate, s: dict) -> str:
    try:
        principal = gate.check(s)
    except Refusal as refusal:
        return refusal.code
    return principal.kind if principal else "unix"


def logged_in(sessions: WebSessions) -> tuple[str, str]:
    redeemed = sessions.redeem(sessions.new_login())
    assert redeemed is not None
    cookie, session = redeemed
    return f"{SESSION_COOKIE}={cookie}", session.csrf


def test_a_login_token_works_once_and_briefly(setup):
    _gate, sessions, clock = setup
    token = sessions.new_login()
    assert sessions.redeem(token) is not None
    assert sessions.redeem(token) is None  # used
    late = sessions.new_login()
    clock.now += sessions.LOGIN_TTL + 1
    assert sessions.redeem(late) is None  # expired
    assert sessions.redeem("made-up") is None


def test_the_cookie_admits_reads_and_csrf_guards_changes(setup):
    gate, sessions, _clock = setup
    cookie, csrf = logged_in(sessions)
    assert verdict(gate, scope(cookie=cookie)) == "cookie"
    assert verdict(gate, scope(cookie="other=1; " + cookie)) == "cookie"
    assert verdict(gate, scope(cookie=f"{SESSION_COOKIE}=forged")) == "unauthorized"
    post = {"kind": "http", "method": "POST", "path": "/api/sessions/x/stop"}
    assert verdict(gate, scope(**post, cookie=cookie)) == "csrf_failed"
    assert verdict(gate, scope(**post, cookie=cookie, x_csrf_token="wrong")) == "csrf_failed"
    assert verdict(gate, scope(**post, cookie=cookie, x_csrf_token=csrf)) == "cookie"
    delete = {"kind": "http", "method": "DELETE", "path": "/api/sessions/x"}
    assert verdict(gate, scope(**delete, cookie=cookie)) == "csrf_failed"


def test_the_cookie_counts_only_from_the_listeners_own_origin(setup):
    gate, sessions, _clock = setup
    cookie, csrf = logged_in(sessions)
    own = f"http://{HOST}"
    assert verdict(gate, scope("websocket", cookie=cookie, origin=own)) == "cookie"
    # Another port on the same machine is the same site, not the same origin.
    other_port = "http://127.0.0.1:8080"
    assert verdict(gate, scope("websocket", cookie=cookie, origin=other_port)) == (
        "forbidden_origin"
    )
    assert verdict(gate, scope("websocket", cookie=cookie)) == "forbidden_origin"
    assert verdict(gate, scope(cookie=cookie, origin="http://evil.example")) == ("forbidden_origin")


def test_revoked_or_expired_sessions_are_refused(setup):
    gate, sessions, clock = setup
    cookie, _csrf = logged_in(sessions)
    session = sessions.session(scope(cookie=cookie))
    assert session is not None and sessions.revoke(session.id)
    assert verdict(gate, scope(cookie=cookie)) == "unauthorized"
    cookie, _csrf = logged_in(sessions)
    clock.now += sessions.SESSION_TTL + 1
    assert verdict(gate, scope(cookie=cookie)) == "unauthorized"


def _cookie_gate(tmp_path, clock: Clock):
    """A gate whose app holds WebSockets open until ended and answers `POST /logout` by
    revoking the caller's web session (as the daemon's logout does)."""
    store = Store(tmp_path / "gate.sqlite")
    connections = OpenConnections()
    sessions = WebSessions(clock, connections)

    async def app(s, receive, send):
        if s["type"] == "websocket":
            await send({"type": "websocket.accept"})
            await asyncio.Event().wait()
        session = sessions.session(s)
        assert session is not None
        sessions.revoke(session.id)
        await asyncio.sleep(0.05)  # the endings scheduled by revoke run meanwhile
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"logged out"})

    return TokenGate(app, store, connections, credentials=[sessions]), sessions, store


async def _run(gate: TokenGate, s: dict) -> tuple[asyncio.Task, list[dict]]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        await asyncio.Event().wait()
        return {}

    task = asyncio.ensure_future(gate(s, receive, send))
    for _ in range(100):
        if sent:
            break
        await asyncio.sleep(0.01)
    return task, sent


def run_async(coro: Any) -> None:
    """`asyncio.run` in a thread of its own: also when this thread has a loop running
    (Playwright's sync API keeps one in the browser tests of the same run)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


def _websocket(cookie: str) -> dict:
    return scope("websocket", path="/ws/events", cookie=cookie, origin=f"http://{HOST}")


def test_logout_closes_the_sessions_websockets_but_answers_itself(tmp_path):
    async def main() -> None:
        gate, sessions, store = _cookie_gate(tmp_path, Clock())
        cookie, csrf = logged_in(sessions)
        other, _csrf = logged_in(sessions)
        events, events_sent = await _run(gate, _websocket(cookie))
        console, console_sent = await _run(gate, _websocket(cookie))
        untouched, untouched_sent = await _run(gate, _websocket(other))
        logout, logout_sent = await _run(
            gate, scope(method="POST", path="/logout", cookie=cookie, x_csrf_token=csrf)
        )
        await asyncio.wait_for(asyncio.gather(events, console, logout), 10)
        for sent in (events_sent, console_sent):
            assert sent[-1] == {"type": "websocket.close", "code": 4401}
        assert [m.get("status") for m in logout_sent][:1] == [200]  # it still answered
        assert logout_sent[-1]["body"] == b"logged out"
        assert not untouched.done() and untouched_sent == [{"type": "websocket.accept"}]
        untouched.cancel()
        store.close()

    run_async(main())


def test_an_expired_sessions_websockets_are_closed(tmp_path):
    async def main() -> None:
        clock = Clock()
        gate, sessions, store = _cookie_gate(tmp_path, clock)
        cookie, _csrf = logged_in(sessions)
        events, sent = await _run(gate, _websocket(cookie))
        assert sessions.expire() == 0 and not events.done()
        clock.now += sessions.SESSION_TTL + 1
        assert sessions.expire() == 1
        await asyncio.wait_for(events, 10)
        assert sent[-1] == {"type": "websocket.close", "code": 4401}
        store.close()

    run_async(main())


def test_only_the_login_path_goes_without_a_credential(setup):
    gate, _sessions, _clock = setup
    assert verdict(gate, scope(path="/login")) == "login"
    assert verdict(gate, scope(method="POST", path="/login")) == "login"
    assert verdict(gate, scope(path="/")) == "unauthorized"
    assert verdict(gate, scope("websocket", path="/login")) == "unauthorized"
    assert verdict(gate, {**scope(path="/login"), "headers": [(b"host", b"evil.example")]}) == (
        "forbidden_host"
    )


def test_login_links_never_reach_the_log():
    record = logging.LogRecord(
        "uvicorn", logging.INFO, "", 0, "GET %s", ("/login?token=abc123secret",), None
    )
    RedactTokens().filter(record)
    assert "abc123secret" not in record.getMessage()


def test_every_vendored_file_comes_from_a_pinned_package():
    assert {spec for spec, _path in FILES} == set(PACKAGES)
    for spec, integrity in PACKAGES.items():
        name, _, version = spec.rpartition("@")
        assert name.startswith("@xterm/") and version.count(".") == 2
        assert integrity.startswith("sha512-")


def test_clauderon_web_says_how_to_fetch_missing_assets(tmp_path, monkeypatch):
    import clauderon.web
    from clauderon.cli import app
    from clauderon.errors import ClauderonError

    monkeypatch.setattr(clauderon.web, "VENDOR", tmp_path / "vendor")
    monkeypatch.setenv("CLAUDERON_HOME", str(tmp_path / "home"))
    with pytest.raises(ClauderonError) as refused:
        app(["web"], standalone_mode=False, prog_name="clauderon")
    assert "run `clauderon web --fetch-assets`" in refused.value.message
    assert not (tmp_path / "home" / "clauderon.sock").exists()  # no daemon was started


def test_the_content_security_policy_is_strict_and_takes_no_header_text():
    from clauderon.daemon.web import content_security_policy

    csp = content_security_policy("127.0.0.1:3030", "n0nce")
    assert "script-src 'self';" in csp and "unsafe" not in csp
    assert "style-src 'self' 'nonce-n0nce'" in csp and "ws://127.0.0.1:3030" in csp
    assert "frame-ancestors 'none'" in csp
    injected = content_security_policy("x; script-src *")
    assert "script-src *" not in injected and "ws://" not in injected
