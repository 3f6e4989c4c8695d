"""Bad input gets one clear line, a non-zero exit, and leaves nothing behind."""

from __future__ import annotations

import signal
import time

import pytest

from .conftest import AGENTS_IMAGE, NOTHING_LEFT, git

pytestmark = pytest.mark.docker

QUIET = ("--env", "ANTHROPIC_BASE_URL=http://127.0.0.1:9")


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.code != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("clauderon: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def create(clauderon, repo, *args: str, prompt: str = "Fix the bug", **env: str):
    return clauderon.run(
        "create", "--repo", str(repo), "--prompt", prompt, *args, check=False, **env
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--name", "Bad Name"), "invalid session name"),
        (("--name", "-x"), "invalid session name"),
        (("--name", "a" * 60), "too long"),
        (("--cpu-limit", "abc"), "invalid --cpu-limit"),
        (("--cpu-limit", "0"), "at least"),
        (("--cpu-limit", "9999"), "this machine has"),
        (("--memory-limit", "512"), "invalid --memory-limit"),
        (("--memory-limit", "lots"), "invalid --memory-limit"),
        (("--pull-policy", "sometimes"), "unknown pull policy"),
        (("--agent", "gemini"), "unknown agent"),
        (("--backend", "kubernetes"), "unknown backend"),
        (("--image", "Not An Image"), "invalid image name"),
        (("--image", "clauderon-nope:missing", "--pull-policy", "never"), "not present locally"),
        (("--image", "clauderon-nope:missing"), "could not be pulled"),
        (("--base-branch", "no-such-branch"), "does not exist"),
        (("--env", "NOEQUALS"), "KEY=VALUE"),
        (("--env", "CLAUDERON_AGENT=x"), "reserved"),
        (("--env", "BAD-KEY=x"), "invalid --env name"),
        (("--model", ""), "invalid --model"),
        (("--agent-version", "1.0; rm -rf /"), "invalid agent version"),
    ],
)
def test_bad_flags(clauderon, repo, args, fragment):
    result = create(clauderon, repo, "--image", AGENTS_IMAGE, *args)
    assert_one_line_error(result, fragment)
    assert clauderon.leftovers(repo) == NOTHING_LEFT


def test_bad_repositories(clauderon, tmp_path, repo):
    assert_one_line_error(create(clauderon, tmp_path / "nope"), "does not exist")
    plain = tmp_path / "plain"
    plain.mkdir()
    assert_one_line_error(create(clauderon, plain), "not inside a git repository")
    empty = tmp_path / "empty"
    empty.mkdir()
    git("init", "-q", cwd=empty)
    assert_one_line_error(create(clauderon, empty), "no commits yet")
    assert_one_line_error(create(clauderon, repo, prompt="   "), "prompt is empty")
    assert clauderon.leftovers(repo) == NOTHING_LEFT


def test_failure_after_the_worktree_exists_is_rolled_back(clauderon, repo):
    # `pkg` exists on main but not on an orphan branch: found only after the worktree exists.
    git("checkout", "-q", "--orphan", "bare-branch", cwd=repo)
    git("rm", "-rq", "--cached", ".", cwd=repo)
    (repo / "only.txt").write_text("x")
    git("add", "only.txt", cwd=repo)
    git("commit", "-qm", "orphan", cwd=repo)
    git("checkout", "-qf", "main", cwd=repo)
    result = create(
        clauderon, repo / "pkg", "--base-branch", "bare-branch", "--image", AGENTS_IMAGE
    )
    assert_one_line_error(result, "'pkg' does not exist on bare-branch")
    left = clauderon.leftovers(repo)
    left["branches"].remove("bare-branch")
    assert left == NOTHING_LEFT


def test_duplicate_name(clauderon, repo):
    clauderon.create(repo, "--name", "twin", "--image", AGENTS_IMAGE, *QUIET)
    before = clauderon.leftovers(repo)
    result = create(clauderon, repo, "--name", "twin", "--image", AGENTS_IMAGE)
    assert_one_line_error(result, "already exists")
    assert clauderon.leftovers(repo) == before
    # A branch of that name made outside clauderon is also refused.
    git("branch", "taken", cwd=repo)
    assert_one_line_error(create(clauderon, repo, "--name", "taken"), "already exists")


def test_docker_not_running(clauderon, repo):
    result = create(clauderon, repo, DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert_one_line_error(result, "Docker engine is not running", "docker info")
    assert clauderon.run("list", "--json", DOCKER_HOST="unix:///x.sock").json == []
    clauderon.run("daemon", "stop")
    assert clauderon.leftovers(repo) == NOTHING_LEFT


@pytest.mark.parametrize(
    "command",
    [
        ["attach"],
        ["logs"],
        ["stop"],
        ["start"],
        ["archive"],
        ["unarchive"],
        ["delete"],
        ["delete", "--force"],
        ["refresh"],
    ],
)
def test_unknown_session_names(clauderon, command):
    result = clauderon.run(*command, "no-such-session", check=False)
    assert_one_line_error(result, "no session named 'no-such-session'")


def test_usage_errors_are_one_line(clauderon):
    result = clauderon.run("create", "--prompt", "x", check=False)
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        "clauderon: error: Missing option '--repo' / '-r'. (see `clauderon create --help`)"
    ]


@pytest.mark.parametrize("delay", [0.4, 0.9, 1.5, 2.5])
def test_ctrl_c_during_create_leaves_nothing(clauderon, big_repo, delay):
    clauderon.run("list")  # a warm daemon, so the interrupt lands inside the creation
    proc = clauderon.spawn(
        "create",
        "--repo",
        str(big_repo),
        "--prompt",
        "x",
        "--image",
        AGENTS_IMAGE,
        "--name",
        "interrupted",
        *QUIET,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    left = clauderon.leftovers(big_repo)
    if left["sessions"]:  # it finished before the interrupt (or while exiting): it is whole
        assert proc.returncode in (0, -signal.SIGINT), err
        assert left["sessions"] == ["interrupted"] and left["containers"]
        assert clauderon.sessions()[0]["state"] == "running"
        return
    assert proc.returncode == 130, err
    assert "nothing was left behind" in err or "already ended" in err
    assert left == NOTHING_LEFT, err


def test_the_api_refuses_a_relative_repository_path(clauderon, repo):
    """The daemon's working directory is not the caller's: "." would be some other repo."""
    from clauderon.client import Client
    from clauderon.errors import ClauderonError

    clauderon.run("list")  # the daemon is up
    client = Client(clauderon.paths, autostart=False)
    for relative in (".", "repo", "../repo"):
        with pytest.raises(ClauderonError, match="must be absolute"):
            client.request("POST", "/api/sessions", json={"repo": relative, "prompt": "x"})
    assert clauderon.leftovers(repo) == NOTHING_LEFT
