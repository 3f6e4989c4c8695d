"""What the README promises and no other test exercised (issue 10), on the real engine
with the real image and, where an agent must talk, the real Claude Code against the fake
model API. Sessions are shared between the tests of one fixture where nothing is lost."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import docker.errors
import pytest

from tests.fakeapi import FakeModelAPI, Text

from .conftest import AGENTS_IMAGE, Clauderon, agent_running, exec_in, make_repo, wait_for
from .test_proxy import ANTHROPIC_KEY, GITHUB_TOKEN, QUIET, curl, routed_config
from .upstream import RecordingUpstream

pytestmark = pytest.mark.docker

PLACEHOLDER = "clauderon-proxy-placeholder"
STATUS = '-o /dev/null -w "%{http_code}"'
EXAMPLE_TOKEN = "ex-REAL-token-of-a-custom-rule-0123456789"
MODEL_CALL = (
    '-X POST -H "x-api-key: $ANTHROPIC_API_KEY" -H "content-type: application/json" '
    '--data \'{"model": "m", "max_tokens": 5, "messages": '
    '[{"role": "user", "content": "held-call"}]}\' https://api.anthropic.com/v1/messages'
)


class Lines:
    """The lines a background process prints, read as they come."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.proc = proc
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def seen(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


def spawn_lines(clauderon: Clauderon, *args: str) -> Lines:
    return Lines(
        subprocess.Popen(
            [sys.executable, "-m", "clauderon", *args],
            env=clauderon.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    )


# --- one live session: a real agent, the fake model API, a custom proxy rule -------------


@dataclass
class Live:
    clauderon: Clauderon
    api: FakeModelAPI
    upstream: RecordingUpstream
    session: dict[str, Any]
    container: Any

    @property
    def name(self) -> str:
        return str(self.session["name"])

    def agent_status(self) -> str:
        return str(self.clauderon.sessions()[0]["agent_status"])


@pytest.fixture(scope="module")
def live(tmp_path_factory, docker_client) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("promises")
    repo = make_repo(base / "repo")
    clauderon = Clauderon(base / "home", docker_client)
    config = (
        "[proxy]\n"
        'allow = ["api.example.test"]\n'
        '[proxy.rules."api.example.test"]\n'
        'credential = "example_token"\n'
        'header = "Authorization"\n'
        'format = "Bearer {}"\n'
        'env = "EXAMPLE_TOKEN"\n'
    )
    try:
        with (
            FakeModelAPI([Text("Done.")], required_key=ANTHROPIC_KEY) as api,
            RecordingUpstream() as upstream,
        ):
            clauderon.configure(
                f'[proxy.upstreams]\n"api.anthropic.com" = "{api.url}"\n'
                f'"api.example.test" = "{upstream.url}"\n' + config,
                ANTHROPIC_API_KEY=ANTHROPIC_KEY,
                EXAMPLE_TOKEN=EXAMPLE_TOKEN,
            )
            session = clauderon.create(repo, "--image", AGENTS_IMAGE, prompt="finish a turn")
            live = Live(clauderon, api, upstream, session, clauderon.container(session))
            # The agent's first turn ends: its hooks say it waits for the user.
            wait_for(lambda: live.agent_status() == "waiting_input", 120)
            yield live
    finally:
        clauderon.cleanup()


@pytest.mark.agent
def test_a_model_request_in_flight_means_working(live):
    """The hooks say `waiting input`; only the proxy knows a model call is under way."""
    assert live.agent_status() == "waiting_input"
    live.api.hold()
    call = threading.Thread(target=curl, args=(live.container, f"-m 100 {MODEL_CALL}"))
    try:
        call.start()
        live.api.wait_for(lambda r: "held-call" in json.dumps(r.body), timeout=30)
        wait_for(lambda: live.agent_status() == "working", 30)
        assert "working" in live.clauderon.run("list").stdout
    finally:
        live.api.release()
        call.join(timeout=60)
    wait_for(lambda: live.agent_status() == "waiting_input", 30)


@pytest.mark.agent
def test_a_custom_rule_injects_its_credential(live):
    _code, env = exec_in(live.container, "echo $EXAMPLE_TOKEN")
    assert env.strip() == PLACEHOLDER  # the container has the placeholder only
    _code, out = curl(
        live.container,
        f'{STATUS} -H "Authorization: Bearer $EXAMPLE_TOKEN" https://api.example.test/probe/rule',
    )
    assert out.strip().endswith("200"), out
    seen = live.upstream.requests_to("/probe/rule")
    assert [s.headers["authorization"] for s in seen] == [f"Bearer {EXAMPLE_TOKEN}"]
    # Any other credential for the ruled host is refused, as for the built-in rules.
    _code, out = curl(
        live.container, f'{STATUS} -H "Authorization: Bearer stolen" https://api.example.test/x'
    )
    assert out.strip().endswith("403") and not live.upstream.requests_to("/x")


@pytest.mark.agent
def test_audit_follows_new_requests(live):
    curl(live.container, "https://api.example.test/probe/before-follow")
    follower = spawn_lines(live.clauderon, "audit", live.name, "-f", "-n", "1", "--json")
    try:
        wait_for(lambda: follower.seen("/probe/before-follow"), 30)  # the past, then…
        assert not follower.seen("/probe/after-follow")
        curl(live.container, "https://api.example.test/probe/after-follow")
        wait_for(lambda: follower.seen("/probe/after-follow"), 30)  # …what comes next
        entry = json.loads(next(x for x in follower.lines if "/probe/after-follow" in x))
        assert entry["session"] == live.name and entry["decision"] == "allowed"
    finally:
        follower.stop()


@pytest.mark.agent
def test_logs_tail_and_follow(live):
    # Lines on the agent's terminal (the container's output), after what the agent drew.
    marks = "".join(f"printf 'mark-{i:02d}\\n' > /proc/1/fd/1; " for i in range(1, 31))
    code, out = exec_in(live.container, marks)
    assert code == 0, out
    everything = live.clauderon.run("logs", live.name).stdout
    assert "mark-01" in everything and "mark-30" in everything
    tail = live.clauderon.run("logs", live.name, "--tail", "5").stdout
    assert "mark-30" in tail and "mark-26" in tail
    assert "mark-25" not in tail and "mark-01" not in tail
    follower = spawn_lines(live.clauderon, "logs", live.name, "-f", "--tail", "1")
    try:
        wait_for(lambda: follower.seen("mark-30"), 30)
        exec_in(live.container, "printf 'mark-followed\\n' > /proc/1/fd/1")
        wait_for(lambda: follower.seen("mark-followed"), 30)
        assert follower.proc.poll() is None  # still following
    finally:
        follower.stop()


# --- what `create` sets: egress and access mode --------------------------------------------


@pytest.fixture
def upstream():
    with RecordingUpstream() as server:
        yield server


def test_egress_off_open_and_read_only_at_create(clauderon, repo, upstream):
    clauderon.configure(
        routed_config(upstream, '"unlisted.example" = "' + upstream.url + '"\n'),
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        GITHUB_TOKEN=GITHUB_TOKEN,
    )
    # `routed_config` ends inside [proxy.upstreams]: the extra line routes one more host.
    off = clauderon.create(
        repo, "--image", AGENTS_IMAGE, "--egress", "off", "--access-mode", "read-only", *QUIET
    )
    opened = clauderon.create(repo, "--image", AGENTS_IMAGE, "--egress", "open", *QUIET)
    listed = {s["name"]: s for s in clauderon.sessions()}
    assert listed[off["name"]]["egress"] == "off"
    assert listed[off["name"]]["access_mode"] == "read-only"
    assert listed[opened["name"]]["egress"] == "open"
    model = '-H "x-api-key: $ANTHROPIC_API_KEY" https://api.anthropic.com'

    # egress off: nothing but the model API, not even the default allowlist.
    container = clauderon.container(off)
    for url in (
        "https://registry.npmjs.org/probe/off-registry",
        "https://api.github.com/probe/off-github",
        "https://unlisted.example/probe/off-unlisted",
    ):
        _code, out = curl(container, f"{STATUS} {url}")
        assert out.strip().endswith("403"), (url, out)  # answered inside TLS
    assert not upstream.requests_to("/probe/off-")
    # read-only: the model calls still work, reads too; any other write is refused.
    _code, out = curl(container, f"{STATUS} -X POST {model}/v1/messages")
    assert out.strip().endswith("200")
    _code, out = curl(container, f"{STATUS} {model}/v1/models")
    assert out.strip().endswith("200")
    _code, out = curl(container, f"{STATUS} -X DELETE {model}/v1/files/probe-write")
    assert out.strip().endswith("403") and not upstream.requests_to("/v1/files")
    code, out = exec_in(container, "echo mine > /workspace/written.txt")  # (a proxy mode)
    assert code == 0, out

    # egress open: any host, the ones on no list included; writes allowed.
    container = clauderon.container(opened)
    _code, out = curl(container, "https://unlisted.example/probe/open-unlisted")
    assert "ok GET /probe/open-unlisted" in out
    _code, out = curl(container, "-X POST https://api.github.com/repos/o/r/issues")
    assert "ok POST /repos/o/r/issues" in out
    entries = [
        json.loads(line)
        for line in clauderon.run("audit", "--json", "-n", "500").stdout.splitlines()
    ]
    decided = {(e["session"], e["host"], e["decision"]) for e in entries}
    assert (off["name"], "unlisted.example", "denied:egress") in decided
    assert (opened["name"], "unlisted.example", "allowed") in decided


# --- the container behind the daemon's back -------------------------------------------------


def started_at(container) -> str:
    container.reload()
    return str(container.attrs["State"]["StartedAt"])


def test_a_restarted_daemon_takes_back_running_containers(clauderon, repo):
    # No periodic reconcile during the test: what is seen is the daemon's start.
    clauderon.configure("", CLAUDERON_RECONCILE_INTERVAL="3600")
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, "--name", "kept", *QUIET)
    running = clauderon.container(session)
    wait_for(lambda: agent_running(running, "claude"))
    before = (running.id, started_at(running))
    clauderon.run("daemon", "stop")
    running.reload()
    assert running.status == "running"  # stopping the daemon stops no agent
    listed = clauderon.sessions()[0]  # starts the daemon again
    assert listed["state"] == "running" and listed["status"] == "running"
    assert (clauderon.container(session).id, started_at(running)) == before  # not restarted

    # A container started behind the daemon's back (`docker start` of a stopped
    # session's): the next daemon takes it back as it is.
    clauderon.run("stop", "kept")
    clauderon.run("daemon", "stop")
    running.start()
    restarted = started_at(running)
    listed = clauderon.sessions()[0]
    assert listed["state"] == "running" and listed["status"] == "running"
    assert started_at(running) == restarted and clauderon.container(session).id == before[0]


def test_start_recreates_a_missing_container(clauderon, repo):
    session = clauderon.create(
        repo, "--image", AGENTS_IMAGE, "--env", "KEEP=me", "--memory-limit", "600m", *QUIET
    )
    name = session["name"]
    for stop_first in (True, False):
        if stop_first:
            clauderon.run("stop", name)
        gone = clauderon.container(session)
        gone.remove(force=True)
        assert clauderon.sessions()[0]["state"] == ("stopped" if stop_first else "missing")
        clauderon.run("start", name)
        fresh = clauderon.container(session)
        assert fresh.id != gone.id
        env = dict(e.split("=", 1) for e in fresh.attrs["Config"]["Env"])
        assert env["KEEP"] == "me"
        assert fresh.attrs["HostConfig"]["Memory"] == 600 * 1024**2
        assert clauderon.sessions()[0]["state"] == "running"
        wait_for(lambda c=fresh: agent_running(c, "claude"))


def test_reconcile_gives_up_visibly_after_its_backoff(clauderon, repo, docker_client):
    """The periodic reconcile retries a missing container after 30 s, 2 min and 5 min,
    then gives up and says so. The waiting is not replayed here: the store is set to
    "two attempts failed, the last one long ago", and the third must give up."""
    image = f"clauderon-test-gone:{clauderon.paths.instance}"  # a tag of the real image
    docker_client.images.get(AGENTS_IMAGE).tag(image)
    try:
        clauderon.configure("", CLAUDERON_RECONCILE_INTERVAL="1")
        session = clauderon.create(repo, "--image", image, "--pull-policy", "never", *QUIET)
        name = session["name"]
        clauderon.run("daemon", "stop")
        clauderon.container(session).remove(force=True)
        docker_client.images.remove(image)  # the tag only: the image stays
        # A manual reconcile tries at once, fails, and does not give up.
        report = clauderon.run("reconcile").stdout
        assert f"Could not recreate {name}" in report and "Gave up" not in report
        assert clauderon.sessions()[0]["status"] == "running"
        clauderon.run("daemon", "stop")
        with sqlite3.connect(clauderon.paths.db) as db:
            (data,) = db.execute("SELECT data FROM sessions WHERE name = ?", (name,)).fetchone()
            record = json.loads(data)
            record["reconcile_attempts"] = 2
            long_ago = datetime.now(UTC) - timedelta(hours=1)
            record["last_reconcile_at"] = long_ago.isoformat()
            db.execute("UPDATE sessions SET data = ? WHERE name = ?", (json.dumps(record), name))
        clauderon.run("list")  # starts the daemon, which reconciles every second
        gave_up = wait_for(lambda: (s := clauderon.sessions()[0])["status"] == "failed" and s, 60)
        assert "gave up recreating its container after 3 attempts" in gave_up["error"]
        listing = clauderon.run("list")
        assert f"{name}: gave up recreating" in listing.stderr
        # The user's own `start` still tries (and says why it cannot).
        failed = clauderon.run("start", name, check=False)
        assert failed.code != 0 and image in failed.stderr
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(image)
