"""The TCP listener's gate, decided on ASGI scopes (issue 9)."""

from __future__ import annotations

import logging

import pytest

from clauderon.daemon.auth import RedactTokens, Refusal, TokenGate, new_token
from clauderon.store import Store


@pytest.fixture
def gate(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    _id, token = new_token(store, "t")
    yield TokenGate(lambda *a: None, store, listen_host="127.0.0.1"), token
    store.close()


def scope(kind="http", host="127.0.0.1:3030", query=b"", **headers: str):
    pairs = [(b"host", host.encode())] if host else []
    pairs += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {
        "type": kind,
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 3030),
        "headers": pairs,
        "query_string": query,
    }


def refused(gate: TokenGate, s: dict) -> int | None:
    try:
        gate.check(s)
    except Refusal as refusal:
        return refusal.status
    return None


def test_loopback_asks_for_a_token(gate):
    gate, token = gate
    assert refused(gate, scope()) == 401
    assert refused(gate, scope(authorization=f"Bearer {token}")) is None
    assert refused(gate, scope(authorization="Bearer cldr_wrong")) == 401
    # `?token=` only where a browser cannot set headers: WebSockets.
    assert refused(gate, scope(query=f"token={token}".encode())) == 401
    assert refused(gate, scope("websocket", query=f"token={token}".encode())) is None


def test_the_unix_socket_is_the_users(gate):
    gate, _token = gate
    assert gate.check({"type": "http", "client": None, "headers": []}) is None


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:3030", True),
        ("localhost:3030", True),
        ("[::1]:3030", True),
        ("10.0.0.5", True),
        ("evil.example:3030", False),
        ("127.0.0.1.evil.example", False),
        ("", False),
    ],
)
def test_only_names_of_this_machine_are_served(gate, host, ok):
    gate, token = gate
    status = refused(gate, scope(host=host, authorization=f"Bearer {token}"))
    assert (status is None) is ok and (ok or status == 403)


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("http://localhost:3030", True),
        ("http://127.0.0.1:3030", True),
        ("http://evil.example", False),
        ("null", False),
        ("file://", False),
    ],
)
def test_websockets_from_other_sites_are_refused(gate, origin, ok):
    gate, token = gate
    s = scope("websocket", query=f"token={token}".encode(), origin=origin)
    assert (refused(gate, s) is None) is ok


def test_tokens_in_urls_never_reach_the_log():
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        "",
        0,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", "/ws/events?token=cldr_SECRET&x=1"),
        None,
    )
    assert RedactTokens().filter(record)
    assert "cldr_SECRET" not in record.getMessage()
    assert "token=[redacted]&x=1" in record.getMessage()
