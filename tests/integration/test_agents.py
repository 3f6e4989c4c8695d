"""The real agent CLIs in session containers, driven by a scripted fake of the model API.

The fake stands where the model API would be: the daemon's credential proxy reaches it
through `[proxy.upstreams]`, and it answers 401 unless it receives the real key, which
only the daemon has; the container holds a placeholder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.fakeapi import FakeModelAPI, Text, ToolCall

from .conftest import AGENTS_IMAGE, BASE_IMAGE, agent_running, exec_in, git, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.agent]

PROMPT = 'Write hello.txt — it\'s "quoted", costs $5 & `uses` backticks\nsecond line: ünïcödé ✓'
ANTHROPIC_KEY = "sk-ant-api03-test-key-for-the-fake-0123456789"
OPENAI_KEY = "sk-openai-test-key-for-the-fake-0123456789"
CLAUDE_SCRIPT = [
    ToolCall("Write", {"file_path": "/workspace/hello.txt", "content": "hello from claude\n"}),
    ToolCall("Bash", {"command": "git add hello.txt && git commit -qm 'claude: add hello'"}),
    Text("Done."),
]
# The pause lets the daemon's 1 s sync see the first commit before it is amended.
AMEND = "sleep 3 && git commit -q --amend -m '{}: add hello, amended'"
CLAUDE_COMMIT_SCRIPT = [
    *CLAUDE_SCRIPT[:2],
    ToolCall("Bash", {"command": AMEND.format("claude")}),
    Text("Done."),
]
CODEX_SCRIPT = [
    ToolCall(
        "exec_command",
        {
            "cmd": "printf 'hello from codex\\n' > hello.txt && "
            "git add hello.txt && git commit -qm 'codex: add hello'"
        },
    ),
    ToolCall("exec_command", {"cmd": AMEND.format("codex")}),
    Text("Done."),
]


def follows_the_commit_and_its_amend(repo: Path, branch: str, agent: str) -> None:
    """The agent's commit reaches the host branch; the amend too, and the first tip stays
    reachable under refs/clauderon/<branch>/replaced/."""

    def tip_with(subject: str) -> str | None:
        log = git("log", "--format=%H %s", "-1", branch, cwd=repo)
        return log.split()[0] if log.endswith(subject) else None

    first = wait_for(lambda: tip_with(f"{agent}: add hello"))
    wait_for(lambda: tip_with(f"{agent}: add hello, amended"))
    kept = git(
        "for-each-ref", "--format=%(objectname)", f"refs/clauderon/{branch}/replaced", cwd=repo
    )
    assert first in kept.split()


def user_texts(request) -> list[str]:
    texts = []
    for message in request.json.get("messages", []):
        if message.get("role") != "user":
            continue
        content = message["content"]
        blocks = [content] if isinstance(content, str) else content
        texts += [b if isinstance(b, str) else b.get("text", "") for b in blocks]
    return texts


def use_fake(clauderon, api: FakeModelAPI) -> None:
    clauderon.configure(
        f'[proxy.upstreams]\n"api.anthropic.com" = "{api.url}"\n"api.openai.com" = "{api.url}"\n',
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        OPENAI_API_KEY=OPENAI_KEY,
    )


def test_claude_code_carries_out_the_prompt(clauderon, repo):
    with FakeModelAPI(CLAUDE_COMMIT_SCRIPT, required_key=ANTHROPIC_KEY) as api:
        use_fake(clauderon, api)
        session = clauderon.create(repo, "--image", AGENTS_IMAGE, prompt=PROMPT)
        # The prompt arrives byte for byte, submitted with no screen in the way.
        first = api.wait_for(lambda r: r.route == "/v1/messages" and r.json.get("tools"))
        assert PROMPT in user_texts(first)
        api.wait_for(lambda r: "claude: add hello" in json.dumps(r.json))
        worktree = Path(session["worktree"])
        wait_for(lambda: (worktree / "hello.txt").exists())
        assert (worktree / "hello.txt").read_text() == "hello from claude\n"
        follows_the_commit_and_its_amend(repo, session["branch"], "claude")
        assert api.errors == []

        # A restarted container continues the same conversation instead of re-sending.
        wait_for(lambda: list((worktree / ".claude" / "projects").glob(f"*/{session['id']}.jsonl")))
        sent = len(api.model_requests())
        clauderon.run("stop", session["name"])
        clauderon.run("start", session["name"])
        container = clauderon.container(session)
        wait_for(lambda: agent_running(container, "claude"))
        processes = [p[-1] for p in container.top(ps_args="-eo pid,args")["Processes"]]
        assert any(f"--resume {session['id']}" in p for p in processes), processes
        time.sleep(3)
        assert not [r for r in api.model_requests()[sent:] if PROMPT in user_texts(r)]


def test_codex_carries_out_the_prompt(clauderon, repo):
    with FakeModelAPI(codex_script=CODEX_SCRIPT, required_key=OPENAI_KEY) as api:
        use_fake(clauderon, api)
        session = clauderon.create(
            repo,
            "--agent",
            "codex",
            "--model",
            "gpt-5-codex",
            "--image",
            AGENTS_IMAGE,
            prompt=PROMPT,
        )
        first = api.wait_for(lambda r: r.route.endswith("/responses"))
        texts = [
            c.get("text")
            for item in first.json["input"]
            if item.get("role") == "user"
            for c in item.get("content", [])
        ]
        assert PROMPT in texts
        worktree = Path(session["worktree"])
        wait_for(lambda: (worktree / "hello.txt").exists())
        follows_the_commit_and_its_amend(repo, session["branch"], "codex")
        # Codex reports the finished turn through its notification hook.
        wait_for(lambda: clauderon.sessions()[0]["agent_status"] == "waiting_input")
        clauderon.run("stop", session["name"])
        clauderon.run("start", session["name"])
        container = clauderon.container(session)
        wait_for(lambda: agent_running(container, "codex"))
        processes = [p[-1] for p in container.top(ps_args="-eo pid,args")["Processes"]]
        assert any("resume --last" in p for p in processes), processes


def test_an_image_without_agents_gets_them_provided_once(clauderon, repo):
    with FakeModelAPI(CLAUDE_SCRIPT, required_key=ANTHROPIC_KEY) as api:
        use_fake(clauderon, api)
        first = clauderon.create(repo, "--image", BASE_IMAGE, "--print", prompt="write the file")
        container = clauderon.container(first)
        mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
        assert mounts["/opt/clauderon/agent"]["RW"] is False
        provided = clauderon.paths.agents / "claude"
        assert [p.name for p in provided.iterdir() if not p.name.startswith(".")] == [
            "2.1.332-linux-x64"
        ]
        wait_for(lambda: (container.reload(), container.status == "exited")[1])
        assert container.attrs["State"]["ExitCode"] == 0
        assert (Path(first["worktree"]) / "hello.txt").exists()
        assert "Done." in clauderon.run("logs", first["name"]).stdout

    # A second session reuses the same copy: nothing is fetched again.
    stamp = (provided / "2.1.332-linux-x64").stat().st_mtime
    second = clauderon.create(
        repo, "--image", BASE_IMAGE, "--env", "ANTHROPIC_BASE_URL=http://127.0.0.1:9"
    )
    assert (provided / "2.1.332-linux-x64").stat().st_mtime == stamp
    container = clauderon.container(second)
    wait_for(lambda: agent_running(container, "claude"))
    _code, out = exec_in(container, "claude --version; touch /opt/clauderon/agent/x")
    assert "2.1.332" in out and "Read-only file system" in out

    codex = clauderon.create(
        repo,
        "--image",
        BASE_IMAGE,
        "--agent",
        "codex",
        "--env",
        "OPENAI_BASE_URL=http://127.0.0.1:9",
    )
    container = clauderon.container(codex)
    wait_for(lambda: agent_running(container, "codex"))
    assert (clauderon.paths.agents / "codex" / "0.171.0-linux-x64" / "bin" / "codex").exists()


def test_an_unknown_agent_version_is_a_clear_error(clauderon, repo):
    result = clauderon.run(
        "create",
        "--repo",
        str(repo),
        "--prompt",
        "x",
        "--image",
        BASE_IMAGE,
        "--agent-version",
        "0.0.1-does-not-exist",
        check=False,
    )
    assert result.code != 0
    assert "could not fetch Claude Code 0.0.1-does-not-exist" in result.stderr
    assert clauderon.sessions() == []
