"""Never lose work under races and faults (issue 10's reproductions, on the real engine)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time

import pytest

from .conftest import AGENTS_IMAGE, exec_in, git, wait_for

pytestmark = pytest.mark.docker

QUIET = ("--env", "ANTHROPIC_BASE_URL=http://127.0.0.1:9")


def reachable_from_saved(repo, session: str, commit: str) -> bool:
    refs = git("for-each-ref", "--format=%(refname)", f"refs/clauderon/{session}/", cwd=repo)
    return any(
        subprocess.run(
            ["git", "merge-base", "--is-ancestor", commit, ref], cwd=repo, check=False
        ).returncode
        == 0
        for ref in refs.split()
    )


def test_delete_force_keeps_the_newest_commit_of_an_agent_committing_in_a_loop(clauderon, repo):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, "--name", "busy", *QUIET)
    container = clauderon.container(session)
    loop = (
        "echo 0 > loop.txt && git add loop.txt && git commit -qm first && "
        "while true; do git commit -q --allow-empty -m next && git rev-parse HEAD; done"
    )
    printed: list[str] = []
    proc = subprocess.Popen(
        [
            "docker",
            "exec",
            "-u",
            container.attrs["Config"]["User"],
            "-w",
            "/workspace",
            container.name,
            "sh",
            "-c",
            loop,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    reader = threading.Thread(target=lambda: printed.extend(proc.stdout), daemon=True)
    reader.start()
    wait_for(lambda: len(printed) >= 5, timeout=60)
    result = clauderon.run("delete", "--force", "busy")
    assert "refs/clauderon/busy/" in result.stdout
    proc.wait(timeout=30)
    reader.join(timeout=10)
    newest = printed[-1].strip()
    assert reachable_from_saved(repo, "busy", newest), (newest, len(printed))


def test_delete_force_removes_a_read_only_tree_the_agent_made(clauderon, repo):
    """Go's module cache under HOME=/workspace is read-only by design."""
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, "--name", "gomod", *QUIET)
    code, output = clauderon.container(session).exec_run(
        [
            "sh",
            "-c",
            "mkdir -p go/pkg/mod/x@v1 && echo m > go/pkg/mod/x@v1/go.mod && chmod -R a-w go",
        ],
        user=clauderon.container(session).attrs["Config"]["User"],
        workdir="/workspace",
    )
    assert code == 0, output
    clauderon.run("delete", "--force", "gomod")
    assert clauderon.leftovers(repo)["worktrees"] == []
    assert clauderon.sessions() == []


def test_a_recovery_that_fails_never_keeps_the_daemon_down(clauderon, repo):
    """A delete cut off by a dying daemon, which start-up cannot finish (a stale ref lock
    left by a crashed git): the daemon still serves the other sessions."""
    import sqlite3

    clauderon.create(repo, "--image", AGENTS_IMAGE, "--name", "stuck", *QUIET)
    clauderon.create(repo, "--image", AGENTS_IMAGE, "--name", "fine", *QUIET)
    clauderon.run("daemon", "stop")
    with sqlite3.connect(clauderon.home / "db.sqlite") as db:
        db.execute(
            "UPDATE sessions SET status = 'deleting', "
            "data = json_set(data, '$.status', 'deleting') WHERE name = 'stuck'"
        )
    lock = repo / ".git" / "refs" / "heads" / "stuck.lock"
    lock.write_text("")
    sessions = {s["name"]: s for s in clauderon.sessions()}
    assert sessions["fine"]["state"] == "running"
    assert sessions["stuck"]["status"] == "failed"
    assert "delete --force stuck" in sessions["stuck"]["error"]
    lock.unlink()
    clauderon.run("delete", "--force", "stuck")
    assert [s["name"] for s in clauderon.sessions()] == ["fine"]


def test_a_killed_container_is_restarted_by_reconcile(clauderon, repo):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, "--name", "killed", *QUIET)
    container = clauderon.container(session)
    container.kill()
    wait_for(lambda: (container.reload(), container.status)[1] == "exited", timeout=30)
    assert clauderon.sessions()[0]["state"] == "exited"
    report = clauderon.run("reconcile").stdout
    assert "Restarted the agent of killed" in report
    container.reload()
    assert container.status == "running"
    assert clauderon.sessions()[0]["state"] == "running"


def test_two_homes_never_touch_each_others_containers(clauderon, repo, tmp_path, docker_client):
    from clauderon.backends.docker import DockerBackend

    from .conftest import Clauderon

    other = Clauderon(tmp_path / "other-home", docker_client)
    try:
        mine = clauderon.create(repo, "--image", AGENTS_IMAGE, "--name", "xh", *QUIET)
        # The same session name in another home (another user, a test): before, both
        # wanted `clauderon-xh`, the second creation failed on the name and its undo
        # removed the first home's running container.
        their_repo = tmp_path / "their-repo"
        git("clone", "-q", str(repo), str(their_repo), cwd=tmp_path)
        theirs = other.create(their_repo, "--image", AGENTS_IMAGE, "--name", "xh", *QUIET)
        assert theirs["container"] != mine["container"]
        other.run("delete", "--force", "xh")
        # Nor does any backend call of the other home reach it by name.
        DockerBackend(other.paths.instance, docker_client).remove(mine["container"])
        container = clauderon.container(mine)
        container.reload()
        assert container.status == "running"
    finally:
        other.cleanup()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_store_stops_nothing_and_recovers(clauderon, repo):
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, "--name", "rostore", *QUIET)
    clauderon.run("daemon", "stop")
    files = list(clauderon.home.glob("db.sqlite*"))
    for f in files:
        f.chmod(0o444)
    result = clauderon.run("stop", "rostore", check=False)
    assert result.code == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "cannot be written" in result.stderr and "chmod u+w" in result.stderr
    container = clauderon.container(session)
    assert container.status == "running"  # nothing acted without being recorded
    for f in clauderon.home.glob("db.sqlite*"):
        f.chmod(0o644)
    clauderon.run("stop", "rostore")
    assert clauderon.sessions()[0]["status"] == "stopped"


def test_a_container_error_is_not_reported_as_the_engine_being_down(
    clauderon, repo, docker_client, tmp_path
):
    """An image whose shell fails: the engine answered, so say what failed."""
    context = tmp_path / "broken-shell"
    context.mkdir()
    (context / "Dockerfile").write_text(
        'FROM clauderon-base:bookworm\nRUN ["/bin/ln", "-sf", "/bin/false", "/bin/sh"]\n'
        "LABEL clauderon.managed=true clauderon.test=broken-shell\n"
    )
    image, _ = docker_client.images.build(
        path=str(context), tag="clauderon-test-broken:1", rm=True, forcerm=True
    )
    try:
        result = clauderon.run(
            "create",
            "--repo",
            str(repo),
            "-p",
            "x",
            "--image",
            "clauderon-test-broken:1",
            check=False,
        )
        assert result.code == 1
        assert "cannot run a shell" in result.stderr, result.stderr
        assert "not running" not in result.stderr
        assert clauderon.leftovers(repo)["sessions"] == []
    finally:
        docker_client.images.remove(image.id, force=True)


def test_clients_following_logs_never_starve_the_daemon(clauderon, repo):
    """Each `logs -f` used to hold one of the few threads every engine and git call
    shares: with more followers than threads, every other command hung."""
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, "--name", "followed", *QUIET)
    followers = [
        subprocess.Popen(
            [sys.executable, "-m", "clauderon", "logs", "-f", "followed"],
            env=clauderon.env,
            stdout=subprocess.PIPE,  # the agent's terminal output: bytes, not text
            stderr=subprocess.DEVNULL,
        )
        for _ in range(10)
    ]
    try:
        # Every follower is connected and served: each receives a line on the agent's
        # terminal (the whole output first, then what comes).
        code, out = exec_in(clauderon.container(session), "echo served > /proc/1/fd/1")
        assert code == 0, out
        ready: list = []
        deadline = time.monotonic() + 60
        while len(ready) < len(followers) and time.monotonic() < deadline:
            waiting = [p.stdout for p in followers if p.stdout not in ready]
            ready += select.select(waiting, [], [], 1)[0]
        assert len(ready) == len(followers), f"{len(ready)} of {len(followers)} followers served"
        listed = clauderon.run("list", "--json", timeout=60)
        assert json.loads(listed.stdout)[0]["name"] == "followed"
        clauderon.run("stop", "followed", timeout=60)
    finally:
        for proc in followers:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.agent
def test_the_first_screen_after_attaching_is_drawn(clauderon, repo):
    """`clauderon screen` as a console's first viewer used to print a blank screen about
    one time in five: the snapshot was taken before the agent's redraw."""
    from tests.fakeapi import FakeModelAPI, Text

    key = "sk-ant-api03-screen-test-key-0123456789abcdef"
    with FakeModelAPI([Text("The answer is forty-two.")], required_key=key) as api:
        clauderon.configure(
            f'[proxy.upstreams]\n"api.anthropic.com" = "{api.url}"\n', ANTHROPIC_API_KEY=key
        )
        session = clauderon.create(repo, "--image", AGENTS_IMAGE, prompt="what is the answer")
        api.wait_for(lambda r: "what is the answer" in json.dumps(r.json), timeout=120)
        screen = ""

        def answered() -> bool:
            nonlocal screen
            screen = clauderon.run("screen", session["name"]).stdout
            return "forty-two" in screen

        try:
            wait_for(answered, 60)
        except AssertionError:
            raise AssertionError(f"the answer never showed; last screen:\n{screen}") from None
        for _ in range(5):
            clauderon.run("daemon", "stop")  # the next command attaches afresh
            assert "forty-two" in clauderon.run("screen", session["name"]).stdout


def test_an_image_probe_left_by_a_killed_daemon_is_removed_at_start(clauderon, docker_client):
    """A daemon killed while it probed an image left the probe container behind."""
    clauderon.run("list")
    leftover = docker_client.containers.create(
        AGENTS_IMAGE,
        "true",
        labels={
            "clauderon.managed": "true",
            "clauderon.instance": clauderon.paths.instance,
            "clauderon.role": "probe",
        },
    )
    report = clauderon.run("reconcile").stdout
    assert leftover.name not in report  # not an orphan of the user's: clauderon's own
    clauderon.run("daemon", "stop")
    clauderon.run("list")
    names = [c.name for c in docker_client.containers.list(all=True)]
    assert leftover.name not in names
