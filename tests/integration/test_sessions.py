"""Sessions on the real engine: the container contract, git inside, and every command."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .conftest import AGENTS_IMAGE, agent_running, exec_in, git, wait_for

pytestmark = pytest.mark.docker

QUIET = ("--env", "ANTHROPIC_BASE_URL=http://127.0.0.1:9")  # the agent reaches nothing


def test_create_builds_the_container_of_the_contract(clauderon, repo):
    session = clauderon.create(
        repo,
        "--image",
        AGENTS_IMAGE,
        "--cpu-limit",
        "1.5",
        "--memory-limit",
        "768m",
        "--env",
        "FOO=bar baz",
        *QUIET,
    )
    assert session["status"] == "running"
    assert session["name"] == session["branch"]
    assert session["container"] == f"clauderon-{session['name']}-{clauderon.paths.instance[:6]}"
    worktree = Path(session["worktree"])
    assert worktree == clauderon.paths.worktrees / session["name"]
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=worktree) == session["name"]

    container = clauderon.container(session)
    attrs = container.attrs
    host = attrs["HostConfig"]
    assert attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
    assert attrs["Config"]["Labels"]["clauderon.managed"] == "true"
    assert attrs["Config"]["Labels"]["clauderon.session"] == session["name"]
    assert attrs["Config"]["Tty"] is True
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == 768 * 1024**2
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["CapDrop"] == ["ALL"]
    assert host["NetworkMode"] == "none"  # loopback only: the proxy socket is the way out

    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/workspace"]["Source"] == str(worktree)
    assert mounts["/workspace/.claude.json"]["RW"] is True
    uploads = f"/workspace/.clauderon/uploads/{session['id']}"
    assert mounts[uploads]["Source"] == str(clauderon.paths.uploads / session["id"])
    assert mounts["/workspace/.clauderon/hooks"]["Source"] == str(clauderon.paths.hooks)
    git_dir = str((repo / ".git").resolve())
    session_git = str(clauderon.paths.sessions / session["name"] / "git")
    assert mounts[session_git]["RW"] is True
    assert mounts[f"{git_dir}/objects"]["RW"] is False
    assert mounts[f"{git_dir}/worktrees/{session['name']}"]["Source"] == (
        f"{session_git}/worktrees/{session['name']}"
    )
    assert mounts["/workspace/.git"]["RW"] is False
    assert git_dir not in mounts
    for volume, target in [
        ("clauderon-cargo-registry", "/workspace/.cargo/registry"),
        ("clauderon-cargo-git", "/workspace/.cargo/git"),
        ("clauderon-sccache", "/workspace/.cache/sccache"),
    ]:
        # A user other than root has their own caches (root's are not theirs to write).
        assert mounts[target]["Name"] == volume + ("" if os.getuid() == 0 else f"-{os.getuid()}")

    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    assert env["FOO"] == "bar baz"
    assert env["CARGO_HOME"] == "/workspace/.cargo"
    assert env["SCCACHE_DIR"] == "/workspace/.cache/sccache"
    assert env["HOME"] == "/workspace"
    wait_for(lambda: agent_running(container, "claude"))

    # Everything inside runs as the user, with no capabilities, and the caches are writable.
    code, out = exec_in(
        container,
        "id -u; id -g; grep CapEff /proc/self/status; "
        "touch .cargo/registry/x .cache/sccache/x && echo writable",
    )
    assert code == 0, out
    lines = out.split()
    assert lines[0] == str(os.getuid()) and lines[1] == str(os.getgid())
    assert "0000000000000000" in out and "writable" in out

    listed = clauderon.run("list", "--json").json
    assert [s["name"] for s in listed] == [session["name"]]
    for key in (
        "id",
        "name",
        "status",
        "backend",
        "agent",
        "image",
        "container",
        "repo",
        "worktree",
        "branch",
        "created_at",
    ):
        assert key in listed[0]
    assert listed[0]["state"] == "running"
    table = clauderon.run("list").stdout
    assert session["name"] in table and "running" in table


def test_git_works_inside_but_cannot_reach_the_host(clauderon, repo):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    container = clauderon.container(session)
    code, out = exec_in(
        container,
        "git status --short && echo change > new.txt && git add new.txt && "
        "git commit -qm 'from the container' && git log --format=%an -1 && git diff HEAD~1 --stat",
    )
    assert code == 0, out
    assert "Dev Eloper" in out  # the user's identity, from the repository's config
    wait_for(
        lambda: git("log", "--format=%s", "-1", session["branch"], cwd=repo) == "from the container"
    )
    assert git("rev-parse", "main", cwd=repo) != git("rev-parse", session["branch"], cwd=repo)

    git_dir = (repo / ".git").resolve()
    code, out = exec_in(container, f"echo 'touch /tmp/pwned' > {git_dir}/hooks/post-commit")
    assert code != 0
    code, out = exec_in(container, "git config core.hooksPath /workspace/evil")
    assert code == 0  # the session's own config: the host never reads it
    assert "hooksPath" not in (git_dir / "config").read_text()
    # Agent files in the home directory are not offered for commit.
    code, out = exec_in(container, "touch .claude.json.backup && git status --porcelain")
    assert out.strip() == ""


def test_subdirectory_and_base_branch(clauderon, repo):
    session = clauderon.create(
        repo / "pkg", "--base-branch", "feature", "--image", AGENTS_IMAGE, *QUIET
    )
    assert session["subdirectory"] == "pkg"
    container = clauderon.container(session)
    assert container.attrs["Config"]["WorkingDir"] == "/workspace/pkg"
    assert (Path(session["worktree"]) / "feature.txt").exists()
    assert git("rev-parse", f"{session['branch']}", cwd=repo) == git(
        "rev-parse", "feature", cwd=repo
    )


def test_stop_start_archive_unarchive_keep_everything(clauderon, repo):
    session = clauderon.create(
        repo,
        "--image",
        AGENTS_IMAGE,
        "--memory-limit",
        "600m",
        "--env",
        "KEEP=me",
        "--name",
        "keeper",
        *QUIET,
    )
    name = session["name"]
    clauderon.run("stop", name)
    assert clauderon.sessions()[0]["state"] == "stopped"
    clauderon.run("start", name)
    assert clauderon.sessions()[0]["state"] == "running"

    (Path(session["worktree"]) / "work.txt").write_text("in progress\n")
    clauderon.run("archive", name)
    assert clauderon.run("list", "--json").json == []  # archived are hidden by default
    archived = clauderon.sessions()[0]
    assert archived["status"] == "archived" and archived["container"] is None
    assert not clauderon.containers()
    assert (Path(session["worktree"]) / "work.txt").exists()

    clauderon.run("unarchive", name)
    container = clauderon.container(clauderon.sessions()[0])
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env["KEEP"] == "me"
    assert container.attrs["HostConfig"]["Memory"] == 600 * 1024**2
    assert container.attrs["Config"]["Image"] == AGENTS_IMAGE
    wait_for(lambda: agent_running(container, "claude"))


def test_refresh_without_a_registry_recreates_from_the_local_image(clauderon, repo):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, "--cpu-limit", "0.5", *QUIET)
    before = clauderon.container(session).id
    result = clauderon.run("refresh", session["name"])
    assert "could not pull" in result.stderr and "local image" in result.stderr
    after = clauderon.container(session)
    assert after.id != before
    assert after.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert clauderon.sessions()[0]["state"] == "running"


def test_delete_never_loses_work(clauderon, repo):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    name, worktree = session["name"], Path(session["worktree"])
    (worktree / "precious.txt").write_text("do not lose me\n")

    refused = clauderon.run("delete", name, check=False)
    assert refused.code != 0
    assert "precious.txt" in refused.stderr and "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert worktree.exists() and clauderon.containers()

    deleted = clauderon.run("delete", "--force", name)
    assert not worktree.exists()
    assert not clauderon.containers()
    assert name not in git("branch", cwd=repo)
    hint = deleted.stdout.strip().splitlines()[-1].strip()
    assert hint.startswith("git -C")
    os.system(hint)  # the printed command restores the work
    assert git("show", f"{name}-restored:precious.txt", cwd=repo) == "do not lose me"


def test_delete_refuses_commits_on_no_other_branch(clauderon, repo):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    worktree = Path(session["worktree"])
    (worktree / "a.txt").write_text("a\n")
    git("add", "a.txt", cwd=worktree)
    git("commit", "-qm", "unmerged", cwd=worktree)
    refused = clauderon.run("delete", session["name"], check=False)
    assert refused.code != 0 and "1 commit(s) on no other branch" in refused.stderr
    git("merge", "-q", session["branch"], cwd=repo)  # now main holds it
    clauderon.run("delete", session["name"])
    assert clauderon.sessions() == []


def test_clean_cache(clauderon, repo, docker_client):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    dry = clauderon.run("clean-cache").stdout
    assert "clauderon-cargo-registry" in dry and session["name"] in dry
    assert "Nothing removed" in dry
    kept = clauderon.run("clean-cache", "--force").stdout
    assert "Kept clauderon-sccache" in kept and "running" in kept
    sccache = "clauderon-sccache" + ("" if os.getuid() == 0 else f"-{os.getuid()}")
    # A stopped session's container holds its volumes too, and is named.
    clauderon.run("stop", session["name"])
    kept = clauderon.run("clean-cache", "--force").stdout
    line = next(x for x in kept.splitlines() if x.split()[1].rstrip(":") == sccache)
    assert line.startswith("Kept") and session["container"] in line, kept
    clauderon.run("delete", session["name"])

    def holders() -> set[str]:
        return {
            c.name
            for c in docker_client.containers.list(all=True)
            if any(m.get("Name") == sccache for m in c.attrs.get("Mounts", []))
        }

    # The volumes are shared by every home on the engine: another's container may hold
    # one (and come or go meanwhile). Kept: only for containers that held it, never this
    # session's. Removed: no container held it all along.
    before = holders()
    removed = clauderon.run("clean-cache", "--force").stdout
    after = holders()
    line = next(x for x in removed.splitlines() if x.split()[1].rstrip(":") == sccache)
    if line.startswith("Kept"):
        named = set(re.findall(r"clauderon-[a-z0-9-]+", line.split(":", 1)[1]))
        assert named and named <= before | after, (line, before, after)
        assert session["container"] not in named
    else:
        assert line.startswith("Removed"), removed
        assert not before & after, (before, after)


def test_reconcile_recreates_and_reports_orphans(clauderon, repo, docker_client):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    clauderon.container(session).remove(force=True)
    assert clauderon.sessions()[0]["state"] == "missing"
    orphan = docker_client.containers.create(
        AGENTS_IMAGE,
        "true",
        name=f"clauderon-orphan-{clauderon.paths.instance}",
        labels={"clauderon.managed": "true", "clauderon.instance": clauderon.paths.instance},
    )
    report = clauderon.run("reconcile").stdout
    assert f"Recreated the missing container of {session['name']}" in report
    assert f"{orphan.name} belongs to no session" in report
    assert clauderon.sessions()[0]["state"] == "running"
    clauderon.run("reconcile", "--remove-orphans")
    assert [c.name for c in clauderon.containers()] == [session["container"]]


def test_print_mode_runs_once_and_logs(clauderon, repo):
    session = clauderon.create(
        repo, "--print", "--image", AGENTS_IMAGE, *QUIET, "--env", "CLAUDE_CODE_MAX_RETRIES=0"
    )
    container = clauderon.container(session)
    wait_for(lambda: (container.reload(), container.status == "exited")[1], timeout=120)
    assert clauderon.sessions()[0]["state"] == "exited"
    logs = clauderon.run("logs", session["name"]).stdout
    assert logs.strip()  # the agent's own complaint about the unreachable API
    attach = clauderon.run("attach", session["name"], check=False)
    assert attach.code != 0 and "print mode" in attach.stderr


def test_daemon_lifecycle(clauderon):
    status = clauderon.run("daemon", "status", check=False)
    assert status.code == 3 and "not running" in status.stdout
    clauderon.run("list")  # starts it on demand
    assert "running" in clauderon.run("daemon", "status").stdout
    assert oct(clauderon.paths.socket.stat().st_mode & 0o777) == "0o600"
    assert oct(clauderon.paths.home.stat().st_mode & 0o777) == "0o700"
    second = clauderon.run("daemon", check=False, timeout=30)
    assert second.code != 0 and "already running" in second.stderr
    clauderon.run("daemon", "stop")
    assert clauderon.run("daemon", "status", check=False).code == 3


def test_doctor(clauderon):
    ok = clauderon.run("doctor", check=False)
    assert "[ok  ] docker" in ok.stdout and "[ok  ] git" in ok.stdout
    broken = clauderon.run("doctor", check=False, DOCKER_HOST="unix:///nonexistent.sock")
    assert broken.code == 1
    assert "FAIL] docker" in broken.stdout and "fix:" in broken.stdout
