"""The credential proxy, tested as an attacker in the container would probe it."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import AGENTS_IMAGE, Clauderon, exec_in
from .upstream import RecordingUpstream

pytestmark = pytest.mark.docker

ANTHROPIC_KEY = "sk-ant-api03-REAL-SECRET-never-in-a-container-0123456789"
GITHUB_TOKEN = "ghp_REALSECRETnevergoesintoacontainer0123"
QUIET = ("--env", "ANTHROPIC_BASE_URL=http://127.0.0.1:9")
ROUTED = (
    "api.anthropic.com",
    "api.github.com",
    "github.com",
    "registry.npmjs.org",
    "console.anthropic.com",
)


def routed_config(upstream: RecordingUpstream, extra: str = "") -> str:
    lines = ["[proxy.upstreams]"] + [f'"{host}" = "{upstream.url}"' for host in ROUTED]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def upstream():
    with RecordingUpstream() as server:
        yield server


@pytest.fixture
def session(clauderon, repo, upstream):
    clauderon.configure(
        routed_config(upstream), ANTHROPIC_API_KEY=ANTHROPIC_KEY, GITHUB_TOKEN=GITHUB_TOKEN
    )
    created = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    return created, clauderon.container(created)


def curl(container, args: str) -> tuple[int, str]:
    return exec_in(container, f"curl -sS -m 10 {args} 2>&1")


def test_credentials_are_injected_only_on_the_way_out(session, upstream, clauderon):
    created, container = session
    code, out = exec_in(container, "echo $ANTHROPIC_API_KEY $GH_TOKEN $HTTPS_PROXY")
    assert "clauderon-proxy-placeholder clauderon-proxy-placeholder http://clauderon:" in out
    assert ANTHROPIC_KEY not in out and GITHUB_TOKEN not in out

    curl(container, '-H "x-api-key: $ANTHROPIC_API_KEY" https://api.anthropic.com/probe/messages')
    curl(container, '-H "Authorization: Bearer $GH_TOKEN" https://api.github.com/probe/user')
    exec_in(container, "git ls-remote https://github.com/probe/repo.git")
    seen = upstream.requests_to("/probe/messages")[0]
    assert seen.headers["x-api-key"] == ANTHROPIC_KEY
    assert (
        upstream.requests_to("/probe/user")[0].headers["authorization"] == f"Bearer {GITHUB_TOKEN}"
    )
    git_auth = upstream.requests_to("/probe/repo.git")[0].headers["authorization"]
    assert base64.b64decode(git_auth.split()[1]).decode() == f"x-access-token:{GITHUB_TOKEN}"
    assert "proxy-authorization" not in seen.headers

    # Anything but the placeholder as a credential for a ruled host is refused.
    _code, out = curl(
        container,
        '-H "x-api-key: sk-ant-stolen" -o /dev/null -w "%{http_code}" '
        "https://api.anthropic.com/probe/stolen",
    )
    assert out.strip().endswith("403")
    assert not upstream.requests_to("/probe/stolen")

    # A Host header that is not the real destination is refused (domain fronting).
    curl(container, '-H "Host: api.anthropic.com" https://registry.npmjs.org/probe/fronted')
    assert not upstream.requests_to("/probe/fronted")

    entries = [
        e
        for e in clauderon.run("audit", created["name"], "--json", "-n", "500").stdout.splitlines()
        if "/probe/" in e
    ]
    decisions = {json.loads(e)["path"]: json.loads(e) for e in entries}
    assert decisions["/probe/messages"]["credential"] == "anthropic_api_key"
    assert decisions["/probe/stolen"]["decision"] == "denied:credential"


def host_addresses() -> list[str]:
    """This machine's IPv4 addresses that are not loopback (docker bridges included)."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return [a for a in out if ":" not in a and not a.startswith("127.")]


def control_probe(clauderon, urls: list[str]) -> str:
    """Fetch `urls` from a control container on a normal bridge network (the test's own,
    labelled): what a session would reach if its isolation failed."""
    clauderon.gateway()  # makes the network
    script = "; ".join(f"curl -sS -m 5 {url} 2>&1; echo" for url in urls)
    control = clauderon.docker.containers.run(
        AGENTS_IMAGE,
        ["sh", "-c", script],
        network=clauderon.test_network,
        labels={
            "clauderon.managed": "true",
            "clauderon.instance": clauderon.paths.instance,
            "clauderon.role": "test-control",
        },
        detach=True,
    )
    try:
        control.wait(timeout=120)
        return control.logs().decode(errors="replace")
    finally:
        control.remove(force=True)


def test_egress_is_only_through_the_proxy(session, upstream, clauderon):
    _created, container = session
    gateway = clauderon.gateway()  # the host side of a docker bridge
    # Servers that answer: one on every address of the host (what a published port or a
    # service on 0.0.0.0 is), one on the bridge's gateway address only.
    with RecordingUpstream(host="0.0.0.0") as anywhere, RecordingUpstream(host=gateway) as bridge:
        targets = [f"{gateway}:{bridge.port}", f"{gateway}:{anywhere.port}"]
        targets += [f"{a}:{anywhere.port}" for a in host_addresses() if a != gateway]
        # A container on a normal network reaches every one of them…
        seen = control_probe(clauderon, [f"http://{t}/probe/control" for t in targets])
        assert seen.count("ok GET /probe/control") == len(targets), seen
        # …the session reaches none, directly,
        for target in targets:
            code, out = curl(container, f"--noproxy '*' -m 3 http://{target}/probe/session")
            assert code != 0, (target, out)
        # and through the proxy the default egress refuses them.
        for target in targets[:2]:
            code, out = curl(
                container, f"-o /dev/null -w '%{{http_code}}' http://{target}/probe/session"
            )
            assert out.strip().endswith("403"), (target, out)
        assert not anywhere.requests_to("/probe/session")
        assert not bridge.requests_to("/probe/session")
    # The container has loopback only.
    _code, out = exec_in(container, "tail -n +3 /proc/net/dev | cut -d: -f1")
    assert out.split() == ["lo"], out

    code, out = curl(container, "http://example.org/probe")
    assert "egress to example.org is denied" in out and "clauderon allow example.org" in out
    code, out = curl(container, "https://example.org/probe")
    # Answered inside TLS, where the client reads why (a refused CONNECT shows nothing).
    assert code == 0 and "egress to example.org is denied" in out, out
    code, out = curl(container, "https://registry.npmjs.org/probe/allowed")
    assert code == 0 and "ok GET /probe/allowed" in out

    denied = [
        json.loads(line)
        for line in clauderon.run("audit", "--json", "-n", "500").stdout.splitlines()
    ]
    assert any(e["host"] == "example.org" and e["decision"] == "denied:egress" for e in denied)


def test_read_only_mode_switches_live(session, upstream, clauderon):
    created, container = session
    name = created["name"]
    write = '-o /dev/null -w "%{http_code}" -X POST https://api.github.com/repos/o/r/issues'
    assert curl(container, write)[1].strip().endswith("200")
    clauderon.run("set-access-mode", name, "read-only")
    code, out = curl(container, write)
    assert out.strip().endswith("403")
    assert (
        curl(container, '-o /dev/null -w "%{http_code}" https://api.github.com/probe/read')[1]
        .strip()
        .endswith("200")
    )
    # The agent's own model calls still work.
    model = (
        '-o /dev/null -w "%{http_code}" -X POST -H "x-api-key: $ANTHROPIC_API_KEY" '
        "https://api.anthropic.com/v1/messages"
    )
    assert curl(container, model)[1].strip().endswith("200")
    _code, out = curl(container, "-X DELETE https://api.github.com/probe/write")
    assert "read-only" in out and "set-access-mode" in out
    clauderon.run("set-access-mode", name, "read-write")
    assert curl(container, write)[1].strip().endswith("200")
    bad = clauderon.run("set-access-mode", name, "write-only", check=False)
    assert bad.code != 0 and "unknown access mode" in bad.stderr


def test_responses_stream_through(session, upstream):
    _, container = session
    # The second event comes 2 s after the first: with a 1.5 s limit only a streamed first
    # event can arrive.
    _code, out = exec_in(container, "curl -sN -m 1.5 https://api.anthropic.com/sse; true")
    assert "data: first" in out and "second" not in out


def test_no_secret_anywhere_the_agent_can_look(session, upstream, clauderon):
    _created, container = session
    curl(container, '-H "x-api-key: $ANTHROPIC_API_KEY" https://api.anthropic.com/probe/x')
    exec_in(container, "git ls-remote https://github.com/probe/repo.git")
    time.sleep(1)
    secrets = (ANTHROPIC_KEY, GITHUB_TOKEN)

    _, environs = exec_in(container, "cat /proc/[0-9]*/environ | tr '\\0' '\\n'")
    assert "ANTHROPIC_API_KEY=clauderon-proxy-placeholder" in environs
    places = {
        "process environments": environs,
        "docker inspect": json.dumps(container.attrs),
        "docker logs": container.logs().decode(errors="replace"),
        "daemon log": (clauderon.paths.logs / "daemon.log").read_text(),
        "audit log": clauderon.paths.audit_log.read_text(),
    }
    for mount in container.attrs["Mounts"]:
        if mount["Type"] != "bind":
            continue
        source = Path(mount["Source"])
        files = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
        for path in files:
            if path.stat().st_size < 5_000_000 and ".git/objects" not in str(path):
                places[str(path)] = path.read_bytes().decode(errors="replace")
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a real credential is visible in {where}"
    mounted = {m["Source"] for m in container.attrs["Mounts"]}
    assert str(clauderon.home / "proxy-ca-key.pem") not in mounted
    assert str(clauderon.paths.secrets) not in mounted


def test_connections_that_are_not_a_sessions_are_refused(session, clauderon, repo):
    created, container = session
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    token = env["HTTPS_PROXY"].split("@")[0].split(":")[-1]
    other = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    intruder = clauderon.container(other)
    probe = "curl -sS -m 5 -o /dev/null -w '%{http_code}' --noproxy '' "
    _code, out = exec_in(
        intruder, probe + "-x http://127.0.0.1:18100 http://registry.npmjs.org/probe"
    )
    assert out.strip().endswith("407")  # no credential
    _code, out = exec_in(
        intruder,
        probe + f"-x http://clauderon:{token}@127.0.0.1:18100 http://registry.npmjs.org/probe",
    )
    assert out.strip().endswith("403")  # the right token from the wrong session's socket
    # Sessions cannot reach each other: no address, no shared network, no other socket.
    assert container.attrs["NetworkSettings"]["IPAddress"] == ""
    mounted = [m["Source"] for m in intruder.attrs["Mounts"]]
    assert not any(f"/sessions/{created['name']}/" in source for source in mounted)
    _code, out = exec_in(intruder, "ls /run/clauderon")
    assert out.split() == ["p.sock"]


def test_credentials_command_and_secret_files(clauderon, repo):
    clauderon.configure("", ANTHROPIC_API_KEY=ANTHROPIC_KEY)
    listing = clauderon.run("config", "credentials").stdout
    assert "anthropic_api_key" in listing and "env:ANTHROPIC_API_KEY" in listing
    assert ANTHROPIC_KEY not in listing and "sk-a…6789" in listing
    stored = subprocess.run(
        [sys.executable, "-m", "clauderon", "config", "set-credential", "github_token"],
        input=GITHUB_TOKEN + "\n",
        env=clauderon.env,
        capture_output=True,
        text=True,
    )
    assert stored.returncode == 0, stored.stderr
    secret = clauderon.paths.secrets / "github_token"
    assert secret.read_text().strip() == GITHUB_TOKEN
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(clauderon.paths.secrets.stat().st_mode) == 0o700
    assert "file:" in clauderon.run("config", "credentials").stdout
    secret.chmod(0o644)
    clauderon.run("daemon", "stop")
    warned = clauderon.run("config", "credentials")
    assert f"chmod 600 {secret}" in warned.stderr
    unknown = clauderon.run("config", "set-credential", "nope", check=False)
    assert unknown.code != 0 and "unknown credential" in unknown.stderr
    # A credential may not be handed to the container directly.
    refused = clauderon.run(
        "create",
        "--repo",
        str(repo),
        "--prompt",
        "x",
        "--env",
        "ANTHROPIC_API_KEY=sk-real",
        check=False,
    )
    assert refused.code != 0 and "would put a credential inside the container" in refused.stderr


def test_the_ca_is_made_once_and_its_key_stays_home(session, clauderon):
    _, container = session
    cert, key = clauderon.home / "proxy-ca.pem", clauderon.home / "proxy-ca-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/etc/clauderon/proxy-ca.pem"]["Source"] == str(cert)
    assert mounts["/etc/clauderon/proxy-ca.pem"]["RW"] is False
    before = cert.read_bytes()
    clauderon.run("daemon", "stop")
    clauderon.run("list")
    assert cert.read_bytes() == before  # not regenerated: running sessions keep trusting it


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ("[proxy\n", "not valid TOML"),
        ('[proxy.upstreams]\n"api.anthropic.com" = "ftp://x"\n', "must be an http(s) URL"),
        ('[proxy.rules."api.x.com"]\ncredential = "x"\nformat = "Bearer"\n', "exactly once"),
        ('[proxy.rules."api.x.com"]\ncredential = "BAD NAME"\n', "credential names"),
        ("[proxy]\nallow = ['not a host']\n", "not a host name"),
        ("[proxy]\nport = 0\n", "greater than or equal to 1"),
        ("[proxy]\nunknown = 1\n", "Extra inputs"),
    ],
)
def test_bad_config_is_a_clear_error(clauderon, config, fragment):
    clauderon.configure(config)
    result = clauderon.run("list", check=False)
    assert result.code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "config.toml" in lines[0] and fragment in lines[0], lines


def test_oauth_is_refreshed_once_by_the_proxy_alone(clauderon, repo, upstream):
    clauderon.configure(routed_config(upstream))
    clauderon.paths.secrets.mkdir(parents=True, mode=0o700)
    secret = clauderon.paths.secrets / "claude_oauth_token"
    secret.write_text(
        json.dumps(
            {
                "access_token": "stale-access-token",
                "refresh_token": "single-use-refresh-token",
                "expires_at": time.time() - 10,
                "token_url": "https://console.anthropic.com/v1/oauth/token",
            }
        )
    )
    secret.chmod(0o600)
    sessions = [clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET) for _ in range(2)]
    containers = [clauderon.container(s) for s in sessions]
    _code, out = exec_in(containers[0], "echo $CLAUDE_CODE_OAUTH_TOKEN")
    assert out.strip() == "clauderon-proxy-placeholder"

    def call(container, tag: str) -> None:
        curl(
            container,
            f'-H "Authorization: Bearer $CLAUDE_CODE_OAUTH_TOKEN" '
            f"https://api.anthropic.com/probe/oauth-{tag}",
        )

    threads = [
        threading.Thread(target=call, args=(c, str(i)))
        for i, c in enumerate(containers)
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refreshes = upstream.requests_to("/v1/oauth/token")
    assert len(refreshes) == 1
    assert json.loads(refreshes[0].body)["refresh_token"] == "single-use-refresh-token"
    calls = upstream.requests_to("/probe/oauth-")
    assert len(calls) == 6
    assert {c.headers["authorization"] for c in calls} == {"Bearer fresh-access-token"}
    saved = json.loads(secret.read_text())
    assert saved["refresh_token"] == "rotated-refresh-token"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    for container in containers:
        _, environ = exec_in(container, "cat /proc/[0-9]*/environ | tr '\\0' '\\n'")
        assert "refresh" not in environ.lower() or "rotated" not in environ
        assert "fresh-access-token" not in environ


def test_the_tests_daemon_gets_no_credential_of_the_machine(tmp_path, docker_client, monkeypatch):
    """Guard for the tests themselves: a key in the environment of whoever runs the
    suite never reaches a test's daemon (it would make every "no credential" check lie)."""
    leaked = "sk-ant-api03-LEAKED-from-the-machine-0123456789"
    for name in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "GITHUB_TOKEN"):
        monkeypatch.setenv(name, leaked)
    clauderon = Clauderon(tmp_path / "home", docker_client)
    try:
        clauderon.run("list")  # starts the daemon with the harness's environment
        pid = int(clauderon.paths.daemon_lock.read_text().strip())
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"CLAUDERON_HOME={clauderon.home}".encode() in environ
        assert not [e for e in environ if leaked.encode() in e]
        assert "env:" not in clauderon.run("config", "credentials").stdout
    finally:
        clauderon.cleanup()


def test_a_missing_ca_directory_is_rebuilt(clauderon, repo, upstream):
    clauderon.configure(routed_config(upstream), ANTHROPIC_API_KEY=ANTHROPIC_KEY)
    clauderon.run("list")
    cert = (clauderon.home / "proxy-ca.pem").read_bytes()
    clauderon.run("daemon", "stop")
    shutil.rmtree(clauderon.home / "proxy")  # mitmproxy's copy of the CA
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    assert (clauderon.home / "proxy-ca.pem").read_bytes() == cert  # the same CA
    code, out = curl(clauderon.container(session), "https://registry.npmjs.org/probe/ca")
    assert code == 0 and "ok GET /probe/ca" in out
    # With the CA itself gone, a new one is made, and new sessions trust it.
    clauderon.run("delete", "--force", session["name"])
    clauderon.run("daemon", "stop")
    for name in ("proxy-ca.pem", "proxy-ca-key.pem"):
        (clauderon.home / name).unlink()
    shutil.rmtree(clauderon.home / "proxy")
    session = clauderon.create(repo, "--image", AGENTS_IMAGE, *QUIET)
    assert (clauderon.home / "proxy-ca.pem").read_bytes() != cert
    code, out = curl(clauderon.container(session), "https://registry.npmjs.org/probe/ca2")
    assert code == 0 and "ok GET /probe/ca2" in out


def test_create_warns_when_the_agent_has_no_credential(clauderon, repo):
    result = clauderon.run(
        "create", "--repo", str(repo), "--prompt", "x", "--image", AGENTS_IMAGE, *QUIET
    )
    assert "warning: no credential for api.anthropic.com" in result.stderr
    assert "ANTHROPIC_API_KEY" in result.stderr
