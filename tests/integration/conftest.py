"""Fixtures for tests on the real Docker engine, with the locally built images.

Each test gets its own CLAUDERON_HOME, so its daemon, store, worktrees and containers are
its own; everything is removed at the end, pass or fail. Cache volumes are
shared by design: the ones that did not exist before the test run are removed after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from clauderon.paths import Paths

AGENTS_IMAGE = "clauderon-agents:bookworm"
BASE_IMAGE = "clauderon-base:bookworm"
REPO_ROOT = Path(__file__).resolve().parents[2]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"no Docker engine ({exc}): run scripts/setup-docker.sh")
    for image in (AGENTS_IMAGE, BASE_IMAGE):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {image} is missing: run scripts/build-images.sh")
    volumes_before = {v.name for v in client.volumes.list()}
    yield client
    for volume in client.volumes.list(filters={"label": "clauderon.cache=true"}):
        if volume.name not in volumes_before:
            with contextlib.suppress(docker.errors.APIError):
                volume.remove(force=True)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


class Clauderon:
    """Runs the real CLI (a separate process) against one home."""

    def __init__(self, home: Path, client: docker.DockerClient):
        self.home = home
        self.paths = Paths(home)
        self.docker = client
        # The daemon inherits this environment when a command starts it: no credentials
        # from the machine running the tests leak into it.
        clean = {
            k: v
            for k, v in os.environ.items()
            if not any(
                k.startswith(p)
                for p in ("ANTHROPIC_", "CLAUDE_", "OPENAI_", "CODEX_", "GH_", "GITHUB_")
            )
        }
        self.env = {**clean, "CLAUDERON_HOME": str(home)}

    def configure(self, config_toml: str = "", **daemon_env: str) -> None:
        """Write config.toml and set the daemon's environment (before it starts)."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(config_toml)
        self.env.update(daemon_env)

    def run(self, *args: str, check: bool = True, timeout: float = 180, **env: str) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "clauderon", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"clauderon {' '.join(args)} failed: {proc.stderr}")
        return result

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """Start the CLI without waiting (to interrupt it, or the daemon, midway)."""
        return subprocess.Popen(
            [sys.executable, "-m", "clauderon", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def create(self, repo: Path, *args: str, prompt: str = "Fix the bug", **env: str) -> dict:
        return self.run(
            "create", "--repo", str(repo), "--prompt", prompt, "--json", *args, **env
        ).json

    def sessions(self) -> list[dict]:
        return self.run("list", "--archived", "--json").json

    def containers(self) -> list:
        return self.docker.containers.list(
            all=True, filters={"label": f"clauderon.instance={self.paths.instance}"}
        )

    def container(self, session: dict):
        return self.docker.containers.get(session["container"])

    @property
    def test_network(self) -> str:
        return f"clauderon-test-{self.paths.instance}"

    def gateway(self) -> str:
        """An address of this machine that is not loopback: the host side of a docker
        bridge network this test makes (labelled, removed at the end)."""
        try:
            network = self.docker.networks.get(self.test_network)
        except docker.errors.NotFound:
            network = self.docker.networks.create(
                self.test_network,
                driver="bridge",
                labels={"clauderon.managed": "true", "clauderon.instance": self.paths.instance},
            )
            network.reload()
        return network.attrs["IPAM"]["Config"][0]["Gateway"]

    def leftovers(self, repo: Path) -> dict[str, Any]:
        """Everything a failed or cancelled operation could have left behind."""
        branches = git("branch", "--format=%(refname:short)", cwd=repo).split()
        worktrees = (
            sorted(p.name for p in self.paths.worktrees.iterdir())
            if self.paths.worktrees.exists()
            else []
        )
        session_dirs = (
            sorted(p.name for p in self.paths.sessions.iterdir())
            if self.paths.sessions.exists()
            else []
        )
        return {
            "containers": [
                c.name for c in self.containers() if c.labels.get("clauderon.role") is None
            ],
            "sessions": [s["name"] for s in self.sessions()],
            "worktrees": worktrees,
            "session_dirs": session_dirs,
            "branches": [b for b in branches if b not in ("main", "feature")],
            "git_worktrees": git("worktree", "list", "--porcelain", cwd=repo).count("worktree "),
        }

    def cleanup(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "clauderon", "daemon", "stop"],
            env=self.env,
            capture_output=True,
            timeout=60,
        )
        for container in self.containers():
            container.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.docker.networks.get(self.test_network).remove()


NOTHING_LEFT = {
    "containers": [],
    "sessions": [],
    "worktrees": [],
    "session_dirs": [],
    "branches": [],
    "git_worktrees": 1,
}


@pytest.fixture
def clauderon(tmp_path: Path, docker_client: docker.DockerClient) -> Iterator[Clauderon]:
    instance = Clauderon(tmp_path / "home", docker_client)
    yield instance
    instance.cleanup()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit on `main`, a subdirectory and a second branch."""
    return make_repo(tmp_path / "repo")


def init_repo(root: Path, files: dict[str, str] | None = None) -> Path:
    """A repository at `root` with one commit on `main` (a README, or `files`)."""
    root.mkdir()
    git("init", "-q", "-b", "main", cwd=root)
    git("config", "user.email", "dev@example.com", cwd=root)
    git("config", "user.name", "Dev Eloper", cwd=root)
    for name, text in (files or {"README.md": "hello\n"}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git("add", ".", cwd=root)
    git("commit", "-qm", "init", cwd=root)
    return root


def make_repo(root: Path) -> Path:
    """The `repo` fixture's repository, at `root` (for fixtures of a wider scope): one
    commit on `main` with a subdirectory, and a branch `feature` one commit ahead."""
    init_repo(root, {"README.md": "hello\n", "pkg/mod.py": "x = 1\n"})
    git("branch", "feature", cwd=root)
    git("checkout", "-q", "feature", cwd=root)
    (root / "feature.txt").write_text("feature\n")
    git("add", ".", cwd=root)
    git("commit", "-qm", "feature work", cwd=root)
    git("checkout", "-q", "main", cwd=root)
    return root


def wait_for(predicate, timeout: float = 90, interval: float = 0.25):
    """Poll until `predicate()` is true (engine hiccups count as not yet); return its value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (docker.errors.DockerException, OSError):
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout:.0f}s (last: {last!r})")


@pytest.fixture
def big_repo(repo: Path) -> Path:
    """Enough files that `git worktree add` takes a noticeable moment."""
    for i in range(30):
        folder = repo / "data" / f"d{i}"
        folder.mkdir(parents=True)
        for j in range(100):
            (folder / f"f{j}.txt").write_text(f"{i}-{j}\n" * 200)
    git("add", ".", cwd=repo)
    git("commit", "-qm", "data", cwd=repo)
    return repo


def exec_in(
    container, command: str, user: str | None = None, workdir: str = "/workspace"
) -> tuple[int, str]:
    """Run a shell command in a session container as the session's user."""
    code, output = container.exec_run(
        ["sh", "-c", command],
        user=user or container.attrs["Config"]["User"],
        workdir=workdir,
    )
    return code, output.decode(errors="replace")


def agent_running(container, command: str) -> bool:
    container.reload()
    if container.status != "running":
        return False
    processes = container.top(ps_args="-eo pid,args")["Processes"] or []
    return any(p[-1].startswith(f"{command} ") or p[-1] == command for p in processes)
