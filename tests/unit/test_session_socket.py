"""The way out of a session container, without Docker: the forwarder (compiled from its
source, run on this host's loopback) joined to a session's proxy socket, and the proxy
attributing what arrives on that socket to that session and to no other."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clauderon.config import ProxyConfig
from clauderon.forwarder import binary_path, ensure_forwarder
from clauderon.models import AccessMode, Egress
from clauderon.proxy.audit import AuditLog
from clauderon.proxy.ca import ensure_ca
from clauderon.proxy.credentials import CredentialStore
from clauderon.proxy.policy import SessionPolicy
from clauderon.proxy.server import CredentialProxy, bind_unix, session_peer

needs_cc = pytest.mark.skipif(
    not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_socket_binds_whatever_the_length_of_the_home(tmp_path: Path) -> None:
    deep = tmp_path / ("h" * 60) / ("o" * 60) / "sessions" / ("n" * 48) / "proxy"
    assert len(str(deep / "p.sock")) > 108  # more than sun_path holds
    sock = bind_unix(deep)
    try:
        path = deep / "p.sock"
        assert path.is_socket() and path.stat().st_mode & 0o777 == 0o600
        client = socket.socket(socket.AF_UNIX)
        fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
        try:
            client.connect(f"/proc/self/fd/{fd}/p.sock")
        finally:
            os.close(fd)
        client.close()
    finally:
        sock.close()


@pytest.fixture(scope="module")
def forwarder(tmp_path_factory) -> Path:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    bin_dir = tmp_path_factory.mktemp("bin")
    built = ensure_forwarder(bin_dir)
    assert built == binary_path(bin_dir) and os.access(built, os.X_OK)
    assert ensure_forwarder(bin_dir) == built  # once per source version
    return built


def echo_server(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return

            def echo(conn: socket.socket = conn) -> None:
                with conn:
                    while data := conn.recv(65536):
                        conn.sendall(data)
                    conn.shutdown(socket.SHUT_WR)  # answer the half-close

            threading.Thread(target=echo, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


@needs_cc
def test_the_forwarder_carries_bytes_both_ways_and_half_closes(
    tmp_path: Path, forwarder: Path
) -> None:
    server = echo_server(tmp_path / "p.sock")
    port = free_port()
    proc = subprocess.Popen([str(forwarder), "-f", str(port), str(tmp_path / "p.sock")])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                clients = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(3)]
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        payload = os.urandom(3 * 1024 * 1024)  # more than its buffers hold
        results: list[bytes] = []

        def exchange(client: socket.socket) -> None:
            sender = threading.Thread(
                target=lambda: (client.sendall(payload), client.shutdown(socket.SHUT_WR))
            )
            sender.start()
            received = bytearray()
            while chunk := client.recv(65536):
                received += chunk
            sender.join()
            results.append(bytes(received))
            client.close()

        threads = [threading.Thread(target=exchange, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [payload] * 3
    finally:
        proc.terminate()
        proc.wait(5)
        server.close()


@needs_cc
def test_the_forwarder_returns_once_it_listens_and_refuses_bad_arguments(
    tmp_path: Path, forwarder: Path
) -> None:
    assert subprocess.run([str(forwarder)], capture_output=True).returncode == 2
    assert subprocess.run([str(forwarder), "0", "/x"], capture_output=True).returncode == 2
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    result = subprocess.run([str(forwarder), str(port), "/x"], capture_output=True, timeout=10)
    assert result.returncode == 1 and b"listen" in result.stderr  # the port is taken
    taken.close()


class Directory:
    """The proxy's view of the sessions: two sessions, tokens `tok-a` and `tok-b`."""

    def __init__(self) -> None:
        self.policies = {
            f"tok-{n}": SessionPolicy(
                name=n,
                session_id=n,
                token=f"tok-{n}",
                egress=Egress.ALLOWLIST,
                access_mode=AccessMode.READ_WRITE,
                hook_token=f"hook-{n}",
            )
            for n in ("a", "b")
        }
        self.reports: list[tuple[str, str]] = []

    def by_token(self, token: str) -> SessionPolicy | None:
        return self.policies.get(token)

    async def verify_peer(self, policy: SessionPolicy, address: str) -> bool:
        return address == session_peer(policy.name)

    def report(self, policy: SessionPolicy, agent: str, event: str, payload: Any) -> None:
        self.reports.append((policy.name, event))

    def model_calls(self, policy: SessionPolicy, delta: int) -> None:
        pass

    def model_result(self, policy: SessionPolicy, error: str | None) -> None:
        pass


async def ask(socket_path: Path, token: str | None, hook: str) -> str:
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    auth = ""
    if token:
        auth = (
            "Proxy-Authorization: Basic "
            + base64.b64encode(f"clauderon:{token}".encode()).decode()
            + "\r\n"
        )
    body = b"{}"
    writer.write(
        (
            "POST http://clauderon.internal/v1/agent-events/claude/Stop HTTP/1.1\r\n"
            "Host: clauderon.internal\r\n"
            f"{auth}Authorization: Bearer {hook}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        + body
    )
    await writer.drain()
    status = (await reader.readline()).decode()
    writer.close()
    return status.split()[1]


def test_a_connection_belongs_to_the_session_whose_socket_it_came_in_on(tmp_path: Path) -> None:
    async def main() -> None:
        _cert, confdir = ensure_ca(tmp_path / "home")
        directory = Directory()
        proxy = CredentialProxy(
            ProxyConfig(),
            confdir,
            CredentialStore(tmp_path / "secrets", [], environ={}),
            directory,
            AuditLog(tmp_path / "audit.jsonl"),
        )
        await proxy.start()  # no TCP listener at all
        try:
            a = await proxy.open_session("a", tmp_path / "a")
            b = await proxy.open_session("b", tmp_path / "b")
            assert await ask(a, "tok-a", "hook-a") == "200"
            assert await ask(b, "tok-b", "hook-b") == "200"
            assert await ask(b, "tok-a", "hook-a") == "403"  # a's token on b's socket
            assert await ask(a, None, "hook-a") == "407"  # no credential
            assert directory.reports == [("a", "Stop"), ("b", "Stop")]
            proxy.close_session("a")
            assert not a.exists()
            with pytest.raises(OSError):
                await asyncio.open_unix_connection(str(a))
        finally:
            await proxy.stop()
        assert not b.exists()

    asyncio.run(main())
