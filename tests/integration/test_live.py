"""Live sessions: agent status, events and console over the API, send, TCP tokens."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.error
import urllib.request

import pyte
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect, unix_connect

from tests.fakeapi import FakeModelAPI, Text, ToolCall

from .conftest import AGENTS_IMAGE, exec_in, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.agent]

KEY = "sk-ant-api03-live-test-key-0123456789abcdef"


def use_fake(clauderon, api: FakeModelAPI) -> None:
    clauderon.configure(
        f'[proxy.upstreams]\n"api.anthropic.com" = "{api.url}"\n', ANTHROPIC_API_KEY=KEY
    )


def agent_status(clauderon, name: str) -> str:
    return next(s["agent_status"] for s in clauderon.sessions() if s["name"] == name)


def ws_unix(clauderon, path: str):
    return unix_connect(str(clauderon.paths.socket), uri=f"ws://clauderon{path}", open_timeout=10)


def test_status_follows_the_agent(clauderon, repo):
    script = [ToolCall("Bash", {"command": "touch /workspace/approved.txt"}), Text("Done.")]
    with FakeModelAPI(script, required_key=KEY) as api:
        use_fake(clauderon, api)
        done = clauderon.create(repo, "--image", AGENTS_IMAGE, prompt="finish a turn")
        asking = clauderon.create(
            repo, "--image", AGENTS_IMAGE, "--ask-permissions", prompt="this needs a permission"
        )
        # A turn that finishes: waiting for the user.
        api.wait_for(lambda r: "finish a turn" in json.dumps(r.json))
        wait_for(lambda: agent_status(clauderon, done["name"]) == "waiting_input")
        # A tool that needs approval: waiting for it.
        wait_for(lambda: agent_status(clauderon, asking["name"]) == "waiting_approval")
        table = clauderon.run("list").stdout
        assert "waiting approval" in table and "waiting input" in table
        # The agent exiting: exited, never stuck at working.
        clauderon.run("stop", done["name"])
        assert agent_status(clauderon, done["name"]) == "exited"
        history = clauderon.sessions()
        assert all(s["agent_status_at"] for s in history if s["name"] == asking["name"])


def test_forged_reports_are_refused(clauderon, repo):
    with FakeModelAPI([Text("Done.")], required_key=KEY) as api:
        use_fake(clauderon, api)
        session = clauderon.create(repo, "--image", AGENTS_IMAGE, prompt="hello")
        api.wait_for(lambda r: r.json.get("tools"))
        wait_for(lambda: agent_status(clauderon, session["name"]) == "waiting_input")
        container = clauderon.container(session)
        post = (
            "curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' "
            "http://clauderon.internal/v1/agent-events/claude/PermissionRequest"
        )
        assert exec_in(container, post + " -H 'Authorization: Bearer forged'")[1] == "403"
        assert exec_in(container, post)[1] == "403"
        assert agent_status(clauderon, session["name"]) == "waiting_input"
        real = post + ' -H "Authorization: Bearer $CLAUDERON_SESSION_TOKEN"'
        assert exec_in(container, real)[1] == "200"
        assert agent_status(clauderon, session["name"]) == "waiting_approval"


def test_events_stream_a_creation(clauderon, repo):
    clauderon.run("list")  # the daemon is up
    events: list[dict] = []
    with ws_unix(clauderon, "/ws/events") as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "connected"
        creator = threading.Thread(
            target=lambda: clauderon.create(
                repo,
                "--image",
                AGENTS_IMAGE,
                "--name",
                "watched",
                "--env",
                "ANTHROPIC_BASE_URL=http://127.0.0.1:9",
            )
        )
        creator.start()
        while not any(e.get("reason") == "session_running" for e in events):
            events.append(json.loads(ws.recv(timeout=60)))
        creator.join()
    types = [e["type"] for e in events if e.get("session") == "watched"]
    assert types[0] == "session_created"
    assert "session_progress" in types
    running = next(e for e in events if e.get("reason") == "session_running")
    assert running["data"]["status"] == "running" and "proxy_token" not in running["data"]


def test_console_viewers_and_send(clauderon, repo):
    with FakeModelAPI([Text("Hello there.")], required_key=KEY) as api:
        use_fake(clauderon, api)
        session = clauderon.create(repo, "--image", AGENTS_IMAGE, prompt="first message")
        name = session["name"]
        api.wait_for(lambda r: r.json.get("tools"))
        wait_for(lambda: agent_status(clauderon, name) == "waiting_input")
        with (
            ws_unix(clauderon, f"/ws/console/{name}") as one,
            ws_unix(clauderon, f"/ws/console/{name}") as two,
        ):
            snapshot = json.loads(one.recv(timeout=10))
            assert snapshot["type"] == "snapshot" and snapshot["rows"] > 0
            assert json.loads(two.recv(timeout=10))["type"] == "snapshot"
            wait_for(lambda: "first message" in clauderon.run("screen", name).stdout, 30)
            # Input from one viewer reaches the agent; both viewers see the output.
            one.send(json.dumps({"type": "send", "text": "typed in the console"}))
            api.wait_for(lambda r: "typed in the console" in json.dumps(r.json), timeout=30)
            for viewer in (one, two):
                seen = b""
                while b"typed in the console" not in seen:
                    message = json.loads(viewer.recv(timeout=30))
                    if message["type"] == "output":
                        seen += base64.b64decode(message["data"])
            one.send(json.dumps({"type": "resize", "rows": 30, "cols": 100}))
            one.send(json.dumps({"type": "nonsense"}))
            while (reply := json.loads(one.recv(timeout=10)))["type"] != "error":
                pass
            assert "unknown message type" in reply["message"]
        # Both viewers left: the agent runs on, and `send` still reaches it.
        assert clauderon.container(session).status == "running"
        clauderon.run("send", name, "sent without attaching")
        api.wait_for(lambda r: "sent without attaching" in json.dumps(r.json), timeout=30)
        wait_for(lambda: "sent without attaching" in clauderon.run("screen", name).stdout, 30)
    bad = clauderon.run("send", "no-such-session", "x", check=False)
    assert bad.code != 0 and "no session named" in bad.stderr
    with ws_unix(clauderon, "/ws/console/no-such-session") as ws:
        assert json.loads(ws.recv(timeout=10))["code"] == "not_found"


def test_tcp_needs_a_token_beyond_loopback(clauderon, tmp_path):
    gateway = clauderon.gateway()  # an address of this machine that is not loopback
    port = 38000 + int(clauderon.paths.instance[:3], 16) % 1000
    daemon = subprocess.Popen(
        [sys.executable, "-m", "clauderon", "daemon", "--listen", f"{gateway}:{port}"],
        env=clauderon.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://{gateway}:{port}"
    try:
        wait_for(lambda: clauderon.run("daemon", "status", check=False).code == 0, 15)
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"{base}/api/sessions", timeout=10)
        assert denied.value.code == 401
        assert json.loads(denied.value.read())["code"] == "unauthorized"
        token = clauderon.run("token", "create", "--name", "test").stdout.strip()
        request = urllib.request.Request(
            f"{base}/api/sessions", headers={"Authorization": f"Bearer {token}"}
        )
        assert json.loads(urllib.request.urlopen(request, timeout=10).read()) == []
        with (
            pytest.raises((ConnectionClosed, InvalidStatus)),
            connect(f"ws://{gateway}:{port}/ws/events") as ws,
        ):
            ws.recv(timeout=5)
        with connect(f"ws://{gateway}:{port}/ws/events?token={token}") as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "connected"
        create_token = urllib.request.Request(
            f"{base}/api/tokens",
            data=b'{"name": "x"}',
            method="POST",
            headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as forbidden:
            urllib.request.urlopen(create_token, timeout=10)
        assert forbidden.value.code == 403
        token_id = clauderon.run("token", "list").stdout.split()[0]
        clauderon.run("token", "revoke", token_id)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=10)
    finally:
        clauderon.run("daemon", "stop", check=False)
        daemon.wait(timeout=30)


def test_attach_is_a_viewer_that_detaches_cleanly(clauderon, repo):
    with FakeModelAPI([Text("Hi from the model.")], required_key=KEY) as api:
        use_fake(clauderon, api)
        session = clauderon.create(repo, "--image", AGENTS_IMAGE, prompt="attach to me")
        api.wait_for(lambda r: r.json.get("tools"))
        primary, secondary = pty.openpty()
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        proc = subprocess.Popen(
            [sys.executable, "-m", "clauderon", "attach", session["name"]],
            env=clauderon.env,
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            start_new_session=True,
        )
        os.close(secondary)
        screen = pyte.Screen(80, 24)  # what a user of this terminal would see
        stream = pyte.ByteStream(screen)

        def shown() -> str:
            return "\n".join(screen.display)

        def read_until(marker: str, timeout: float = 30) -> None:
            deadline = time.monotonic() + timeout
            while marker not in shown() and time.monotonic() < deadline:
                ready, _, _ = select.select([primary], [], [], 0.5)
                if ready:
                    try:
                        stream.feed(os.read(primary, 65536))
                    except OSError:
                        break
            assert marker in shown(), shown()

        try:
            read_until("Detach with Ctrl-P Ctrl-Q")
            read_until("\u276f")  # the agent's input prompt is drawn in this terminal
            os.write(primary, b"typed through attach")
            time.sleep(0.3)
            os.write(primary, b"\r")
            api.wait_for(lambda r: "typed through attach" in json.dumps(r.json), timeout=30)
            os.write(primary, b"\x10\x11")  # Ctrl-P Ctrl-Q
            read_until("detached; the agent keeps running")
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(primary)
        assert clauderon.container(session).status == "running"
        assert agent_status(clauderon, session["name"]) in ("waiting_input", "working")
