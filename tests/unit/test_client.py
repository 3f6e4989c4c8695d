"""The CLI's client when the daemon dies in the middle of an answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

HEADERS = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.fixture(params=["after-progress", "mid-line", "no-answer"])
def dying_daemon(request, tmp_path: Path) -> Iterator[Path]:
    """A socket that answers like a daemon killed mid-create (SIGKILL closes its socket)."""
    home = tmp_path / "home"
    home.mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(home / "clauderon.sock"))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                request_head = conn.recv(65536)
                if b"/api/health" in request_head:
                    conn.sendall(b'HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{"pid": 1} ')
                    continue
                if request.param == "no-answer":
                    continue
                conn.sendall(HEADERS)
                line = b'{"type": "progress", "message": "Creating worktree"}\n'
                conn.sendall(_chunk(line))
                if request.param == "mid-line":
                    conn.sendall(_chunk(b'{"type": "res'))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield home
    server.close()


def test_a_daemon_dying_mid_create_gives_one_line_and_advice(dying_daemon: Path, tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "clauderon", "create", "--repo", str(tmp_path), "-p", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CLAUDERON_HOME": str(dying_daemon)},
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("clauderon: error: ")
    assert "Traceback" not in proc.stderr
    assert "run the command again" in lines[0]
