"""Recovery: the daemon killed mid-operation, the API under a property-based tester."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from .conftest import AGENTS_IMAGE, Clauderon, agent_running, exec_in, git, wait_for

pytestmark = pytest.mark.docker

QUIET = ("--env", "ANTHROPIC_BASE_URL=http://127.0.0.1:9")


def daemon_pid(clauderon) -> int:
    return int((clauderon.home / "daemon.lock").read_text().strip())


def kill_daemon(clauderon) -> None:
    pid = daemon_pid(clauderon)
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def consistent(clauderon, repo: Path) -> dict:
    """After a restart, store, containers and worktrees agree: whole sessions or nothing."""
    clauderon.run("list")  # restarts the daemon, which finishes or undoes what was cut off
    left = clauderon.leftovers(repo)
    sessions = clauderon.sessions()
    for session in sessions:
        assert session["status"] in ("running", "stopped"), session
        assert Path(session["worktree"]).is_dir()
        assert session["branch"] in left["branches"]
        assert any(c == session["container"] for c in left["containers"])
    assert sorted(left["worktrees"]) == sorted(s["name"] for s in sessions)
    assert sorted(left["branches"]) == sorted(s["branch"] for s in sessions)
    assert sorted(left["containers"]) == sorted(s["container"] for s in sessions)
    assert left["git_worktrees"] == 1 + len(sessions)
    return left


@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9, 1.3, 2.0])
def test_kill_9_during_create(clauderon, big_repo, delay):
    clauderon.run("list")
    proc = clauderon.spawn(
        "create",
        "--repo",
        str(big_repo),
        "--prompt",
        "x",
        "--image",
        AGENTS_IMAGE,
        "--name",
        "cut-off",
        *QUIET,
    )
    time.sleep(delay)
    kill_daemon(clauderon)
    _out, errors = proc.communicate(timeout=60)
    left = consistent(clauderon, big_repo)
    assert left["sessions"] in ([], ["cut-off"])
    if proc.returncode == 0:  # it said the session was made: it is there, whole
        assert left["sessions"] == ["cut-off"]
    else:  # one clear line (and the advice to run it again), never a traceback
        assert len(errors.strip().splitlines()) == 1 and "Traceback" not in errors, errors


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.4, 0.8])
def test_kill_9_during_delete(clauderon, repo, delay):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, "--name", "doomed", *QUIET)
    worktree = Path(session["worktree"])
    (worktree / "unsaved.txt").write_text("keep me\n")
    proc = clauderon.spawn("delete", "--force", "doomed")
    time.sleep(delay)
    kill_daemon(clauderon)
    proc.communicate(timeout=60)
    left = consistent(clauderon, repo)
    if left["sessions"]:  # cut off before it began: the work is where it was
        assert (worktree / "unsaved.txt").read_text() == "keep me\n"
    else:  # finished, by the first daemon or the next: the work is in a saved ref
        refs = git("for-each-ref", "--format=%(refname)", "refs/clauderon/doomed/", cwd=repo)
        assert refs, "deleted without saving the work"
        assert git("show", f"{refs.split()[-1]}:unsaved.txt", cwd=repo) == "keep me"


def test_reconcile_marks_a_missing_worktree_and_deletes_nothing(clauderon, repo):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    worktree = Path(session["worktree"])
    moved = worktree.with_name("elsewhere")
    worktree.rename(moved)
    report = clauderon.run("reconcile").stdout
    assert f"Worktree missing for {session['name']}" in report
    listing = clauderon.run("list")
    assert "worktree is missing" in listing.stderr
    moved.rename(worktree)
    assert clauderon.container(session).status == "running"


# --- the API under schemathesis --------------------------------------------------------

# Endpoints that stream forever, or shut the daemon down, are not for random calls.
UNBOUNDED = ("/api/audit", "/api/daemon/shutdown")


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, docker_client):
    home = tmp_path_factory.mktemp("schema") / "home"
    clauderon = Clauderon(home, docker_client)
    port = 39000 + int(clauderon.paths.instance[:3], 16) % 1000
    daemon = subprocess.Popen(
        [sys.executable, "-m", "clauderon", "daemon", "--listen", f"127.0.0.1:{port}"],
        env=clauderon.env,
        cwd=home.parent,  # random requests must never reach the repository the tests run in
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # TCP asks for a token on loopback too.
        wait_for(lambda: clauderon.run("daemon", "status", check=False).code == 0, 30)
        token = clauderon.run("token", "create", "--name", "schema").stdout.strip()
        auth = {"Authorization": f"Bearer {token}"}
        schema = schemathesis.openapi.from_url(
            f"http://127.0.0.1:{port}/openapi.json", wait_for_schema=20, headers=auth
        )
        for path in UNBOUNDED:
            schema = schema.exclude(path=path)
        yield schema.exclude(method="DELETE", path="/api/cache"), auth
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        clauderon.cleanup()


def test_the_api_never_fails_with_a_500_and_errors_are_json(api_schema):
    api_schema, auth = api_schema
    calls: dict[str, int] = {}

    @given(case=api_schema.as_strategy())
    @settings(
        max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def call(case) -> None:
        response = case.call(timeout=60, headers=auth)
        label = f"{case.method} {case.path}"
        calls[label] = calls.get(label, 0) + 1
        assert response.status_code < 500, f"{label}: {response.text[:300]}"
        if response.status_code >= 400:
            body = response.json()
            assert isinstance(body, dict) and {"code", "message"} <= body.keys(), (label, body)

    call()
    assert len(calls) >= 20, calls  # the tester reached (nearly) every operation


def test_a_restarted_daemon_makes_the_session_sockets_again(clauderon, repo):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    socket_path = clauderon.paths.session_dir(session["name"]) / "proxy" / "p.sock"
    assert socket_path.is_socket()
    clauderon.run("daemon", "stop")
    assert not socket_path.exists()  # the daemon takes its sockets with it
    clauderon.run("list")  # starts it again
    assert socket_path.is_socket() and socket_path.stat().st_mode & 0o777 == 0o600
    container = clauderon.container(session)
    code, out = exec_in(
        container, "curl -sS -m 10 -o /dev/null -w '%{http_code}' http://clauderon.internal/x"
    )
    assert out.strip() == "403", out  # the proxy answered, through the same mount
    clauderon.run("delete", session["name"])
    assert not socket_path.parent.exists()


def test_a_container_of_the_old_network_design_is_moved_to_no_network(
    clauderon, repo, docker_client
):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    old = clauderon.container(session)
    labels = old.labels
    clauderon.run("daemon", "stop")
    # What clauderon before 0.2 left running: the session's container on its bridge network.
    old.remove(force=True)
    network = docker_client.networks.create(
        f"clauderon-{clauderon.paths.instance}",
        driver="bridge",
        internal=True,
        labels={"clauderon.managed": "true", "clauderon.instance": clauderon.paths.instance},
    )
    try:
        docker_client.containers.run(
            AGENTS_IMAGE,
            ["sleep", "infinity"],
            name=session["container"],
            labels=labels,
            network=network.name,
            detach=True,
        )
        clauderon.run("list")  # the daemon starts and moves it
        container = clauderon.container(session)
        assert container.attrs["HostConfig"]["NetworkMode"] == "none"
        wait_for(lambda: agent_running(container, "claude"))
        assert clauderon.sessions()[0]["status"] == "running"
        assert not docker_client.networks.list(names=[network.name])  # the old one is gone
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            network.reload()
            network.remove()
