"""The dashboard in a real terminal: tmux runs `clauderon` (no arguments, on a terminal:
the dashboard), keys are sent, the pane is read. Enter attaches to the agent (the
dashboard steps aside), Ctrl-P Ctrl-Q comes back, q quits cleanly."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time

import pytest

from .conftest import Live

pytestmark = [pytest.mark.docker, pytest.mark.agent]


class Tmux:
    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"clauderon-test-{os.getpid()}"  # a server of our own
        self.env = env

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout

    def pane(self) -> str:
        return self("capture-pane", "-p", "-t", "tui")

    def wait(self, predicate, what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.pane()
            if predicate(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"not seen in {timeout:.0f}s: {what}\n{self.pane()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)
        folder = os.environ.get("TMUX_TMPDIR", "/tmp")
        with contextlib.suppress(OSError):  # the server leaves its socket file behind
            os.unlink(os.path.join(folder, f"tmux-{os.getuid()}", self.socket))


def test_in_tmux_attach_and_return(live: Live):
    env = {**live.clauderon.env, "TERM": "xterm-256color"}
    tmux = Tmux(env)
    command = f"{shlex.quote(sys.executable)} -m clauderon; echo TUI-EXIT:$?; sleep 600"
    try:
        tmux("new-session", "-d", "-s", "tui", "-x", "100", "-y", "30", command)
        tmux.wait(lambda t: " first " in t and "Sessions 1" in t, "the list")
        tmux("send-keys", "-t", "tui", "?")
        tmux.wait(lambda t: "clauderon: keys" in t, "the help")
        tmux("send-keys", "-t", "tui", "Escape")
        tmux.wait(lambda t: "clauderon: keys" not in t, "help closed")
        # Enter: the dashboard steps aside and this terminal is the agent's.
        tmux("send-keys", "-t", "tui", "Enter")
        attached = tmux.wait(lambda t: "Attached to first" in t, "attached")
        assert "Sessions 1" not in attached
        tmux.wait(lambda t: "bypass permissions" in t, "the agent's own screen")
        # Ctrl-P Ctrl-Q: back to the dashboard; the agent keeps running.
        tmux("send-keys", "-t", "tui", "C-p", "C-q")
        back = tmux.wait(lambda t: "Sessions 1" in t, "back in the dashboard")
        assert "first" in back
        assert live.clauderon.sessions()[0]["state"] == "running"
        tmux("send-keys", "-t", "tui", "q")
        tmux.wait(lambda t: "TUI-EXIT:0" in t, "a clean exit")
    finally:
        tmux.close()
