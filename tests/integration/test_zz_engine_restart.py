"""The Docker engine restarts under running sessions (runs last: it restarts the engine)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import docker
import pytest

from tests.fakeapi import FakeModelAPI, Text

from .conftest import AGENTS_IMAGE, REPO_ROOT, agent_running, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.agent]

KEY = "sk-ant-api03-engine-restart-0123456789"


def restart_engine() -> None:
    managed = (
        subprocess.run(
            ["systemctl", "is-active", "--quiet", "docker"], capture_output=True
        ).returncode
        == 0
        if _has_systemctl()
        else False
    )
    if managed:
        subprocess.run(["systemctl", "restart", "docker"], check=True, timeout=180)
        return
    pid = int(
        subprocess.run(
            ["pidof", "dockerd"], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )
    os.kill(pid, signal.SIGTERM)
    for _ in range(600):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    subprocess.run([str(REPO_ROOT / "scripts" / "setup-docker.sh")], check=True, timeout=180)


def _has_systemctl() -> bool:
    return (
        subprocess.run(
            ["sh", "-c", "command -v systemctl && [ -d /run/systemd/system ]"], capture_output=True
        ).returncode
        == 0
    )


@pytest.mark.root  # scripts/test.sh runs it in its root pass
@pytest.mark.skipif(os.getuid() != 0, reason="restarting the engine needs root")
def test_sessions_come_back_after_an_engine_restart(clauderon, repo):
    with FakeModelAPI([Text("Noted.")], required_key=KEY) as api:
        clauderon.configure(
            f'[proxy.upstreams]\n"api.anthropic.com" = "{api.url}"\n', ANTHROPIC_API_KEY=KEY
        )
        session = clauderon.create(
            repo, "--image", AGENTS_IMAGE, prompt="remember the word apricot"
        )
        api.wait_for(lambda r: "apricot" in json.dumps(r.json))
        worktree = Path(session["worktree"])
        wait_for(lambda: list((worktree / ".claude" / "projects").glob("*/*.jsonl")))

        restart_engine()

        client = docker.from_env()
        container = wait_for(lambda: client.containers.get(session["container"]))
        wait_for(lambda: agent_running(container, "claude"))
        processes = [p[-1] for p in container.top(ps_args="-eo pid,args")["Processes"]]
        assert any(f"--resume {session['id']}" in p for p in processes), processes
        assert clauderon.sessions()[0]["state"] == "running"

        # The same conversation goes on, through the same proxy.
        time.sleep(2)
        wait_for(
            lambda: (
                clauderon.run("send", session["name"], "what was the word?", check=False).code == 0
            ),
            60,
        )
        follow_up = api.wait_for(lambda r: "what was the word" in json.dumps(r.json), 60)
        assert "apricot" in json.dumps(follow_up.json)
