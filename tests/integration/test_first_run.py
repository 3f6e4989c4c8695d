"""A new user's first session, as the README gives it, run as whoever runs the suite
(scripts/test.sh runs it as a normal user in the docker group): the default image, the
agent provided by clauderon, the fake model making the agent write a file; everything the
agent writes is the user's, and `delete` removes it all without root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakeapi import FakeModelAPI, Text, ToolCall

from .conftest import AGENTS_IMAGE, NOTHING_LEFT, agent_running, exec_in, git, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.agent]

KEY = "sk-ant-api03-first-run-key-0123456789"
SCRIPT = [
    ToolCall("Write", {"file_path": "/workspace/notes/fixed.txt", "content": "fixed\n"}),
    ToolCall("Bash", {"command": "mkdir -p build && echo out > build/artifact"}),
    Text("Done."),
]


def not_owned(root: Path, uid: int) -> list[str]:
    return [str(p) for p in [root, *root.rglob("*")] if p.lstat().st_uid != uid]


def test_the_readme_first_command_end_to_end(clauderon, repo):
    with FakeModelAPI(SCRIPT, required_key=KEY) as api:
        clauderon.configure(
            f'[proxy.upstreams]\n"api.anthropic.com" = "{api.url}"\n', ANTHROPIC_API_KEY=KEY
        )
        # README: clauderon create --repo ~/project --prompt "Fix the bug"
        result = clauderon.run("create", "--repo", str(repo), "--prompt", "Fix the bug")
        assert "is running" in result.stdout
        session = clauderon.sessions()[0]
        assert session["image"] == "clauderon-base:bookworm"
        worktree = Path(session["worktree"])
        wait_for(lambda: (worktree / "notes" / "fixed.txt").exists(), 180)
        wait_for(lambda: (worktree / "build" / "artifact").exists())
        assert (worktree / "notes" / "fixed.txt").read_text() == "fixed\n"
        assert api.errors == []

    container = clauderon.container(session)
    assert container.attrs["HostConfig"]["NetworkMode"] == "none"
    assert container.attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
    # Everything in the home and the worktree is the user's (no root-owned leftovers).
    assert not_owned(clauderon.home, os.getuid()) == []
    assert not_owned(worktree, os.getuid()) == []
    socket_path = clauderon.paths.session_dir(session["name"]) / "proxy" / "p.sock"
    assert socket_path.is_socket() and socket_path.stat().st_mode & 0o777 == 0o600

    # The forwarder comes back if it dies (the agent could kill it; its supervisor stays).
    wait_for(lambda: agent_running(container, "claude"))
    code, out = exec_in(
        container,
        "for p in /proc/[0-9]*; do "
        '  if tr "\\0" " " 2>/dev/null < $p/cmdline | grep -q "^/opt/clauderon/forward"; then '
        "    echo ${p#/proc/}; fi; done 2>/dev/null",
    )
    pids = out.split()
    assert len(pids) == 2, out  # supervisor and worker
    exec_in(container, f"kill -9 {max(pids, key=int)}")
    probe = "curl -sS -m 5 -o /dev/null -w '%{http_code}' http://clauderon.internal/x"
    assert wait_for(lambda: exec_in(container, probe)[1].strip() == "403", 20)

    clauderon.run("delete", "--force", session["name"])
    assert clauderon.sessions() == []
    assert not worktree.exists()
    assert not clauderon.paths.session_dir(session["name"]).exists()
    assert clauderon.containers() == []
    assert session["name"] not in git("branch", "--format=%(refname:short)", cwd=repo).split()
    assert not_owned(clauderon.home, os.getuid()) == []


def test_without_a_compiler_create_refuses_with_the_fix(clauderon, repo):
    clauderon.configure("", CC=str(clauderon.home / "no-such-cc"))
    result = clauderon.run(
        "create", "--repo", str(repo), "--prompt", "x", "--image", AGENTS_IMAGE, check=False
    )
    assert result.code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "sudo apt-get install gcc libc6-dev" in lines[0], lines
    assert clauderon.leftovers(repo) == NOTHING_LEFT
